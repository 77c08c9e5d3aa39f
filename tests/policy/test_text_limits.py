"""Policy text is capped before it is parsed: Markdown rendering costs CPU in proportion to its length."""

import pytest

from policy.markdown import render_policy
from policy.services import MAX_POLICY_CHARS, policy_draft_start
from tests.policy.test_views import editor_post
from tests.policy_factories import publish_policy

pytestmark = pytest.mark.django_db


def test_a_preview_of_an_oversized_text_is_refused_before_parsing(client, reviewer, monkeypatch):
    monkeypatch.setattr("policy.views.render_policy", lambda text: pytest.fail("an oversized text was parsed"))
    v1 = publish_policy()
    policy_draft_start(policy=v1.policy, user=reviewer)
    client.force_login(reviewer)
    huge = "## Heading\n\n*emphasis* [link](http://example.com)\n\n" * 5_000  # 240k characters: seconds of CPU to parse
    response = client.post(f"/policies/{v1.policy_id}/draft/preview/", {"text": huge}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert f"the limit is {MAX_POLICY_CHARS:,}" in response.content.decode()


def test_saving_an_oversized_draft_is_refused_and_keeps_the_old_text(client, reviewer):
    v1 = publish_policy()
    draft = policy_draft_start(policy=v1.policy, user=reviewer)
    client.force_login(reviewer)
    response = client.post(f"/policies/{v1.policy_id}/draft/", editor_post(draft, text="x" * (MAX_POLICY_CHARS + 1)),
                           headers={"HX-Request": "true"})
    assert response.status_code == 400
    assert "limit is" in response.content.decode()
    draft.refresh_from_db()
    assert draft.text == v1.text


def test_a_long_policy_is_parsed_once_per_text(monkeypatch):
    import policy.markdown

    parses = []
    real_parser = policy.markdown._parser
    monkeypatch.setattr(policy.markdown, "_parser", lambda: parses.append(1) or real_parser())
    text = "".join(f"## Clause {i}\n\nSome *policy* text with a [link](http://example.com).\n\n" for i in range(400))
    first = render_policy(text)
    again = render_policy(text)
    assert again == first and len(parses) == 1  # clauses come from the same parse; the second view is cached
    assert first.count('id="clause-clause-') == 400
