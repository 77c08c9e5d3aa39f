import pytest

from policy.services import policy_draft_start
from tests.policy_factories import publish_next, publish_policy, rubric_json, FRESHNESS

pytestmark = pytest.mark.django_db


def editor_post(draft, **overrides) -> dict:
    data = {"lock_version": draft.lock_version, "text": draft.text, "change_note": "", "dim-count": 1,
            "overall": "0", "dim-0-key": "relevance", "dim-0-name": "Overall relevance",
            "dim-0-description": "How well it answers.", "dim-0-weight": "", "dim-0-level-count": 4}
    for j, (label, definition) in enumerate([("Irrelevant", "Nothing."), ("Related", "Related."),
                                             ("Highly relevant", "Some answer."), ("Perfect", "Exact answer.")]):
        data |= {f"dim-0-level-{j}-value": j, f"dim-0-level-{j}-label": label, f"dim-0-level-{j}-definition": definition}
    return data | overrides


def test_the_list_and_detail_pages_render(client, reviewer):
    v1 = publish_policy()
    client.force_login(reviewer)
    assert "Relevance policy" in client.get("/policies/").content.decode()
    html = client.get(f"/policies/{v1.policy_id}/").content.decode()
    assert 'id="clause-scope"' in html and "Start a new draft" in html


def test_a_reviewer_saves_a_draft_with_htmx(client, reviewer):
    v1 = publish_policy()
    draft = policy_draft_start(policy=v1.policy, user=reviewer)
    client.force_login(reviewer)
    response = client.post(f"/policies/{v1.policy_id}/draft/", editor_post(draft, text="# New text"),
                           headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert 'id="saved"' in response.content.decode()
    draft.refresh_from_db()
    assert draft.text == "# New text" and draft.lock_version == 2


def test_a_stale_save_shows_the_conflict_and_keeps_the_other_text(client, reviewer, make_user):
    v1 = publish_policy()
    draft = policy_draft_start(policy=v1.policy, user=reviewer)
    stale = editor_post(draft, text="mine")
    otto = make_user("reviewer", username="otto")
    client.force_login(otto)
    client.post(f"/policies/{v1.policy_id}/draft/", editor_post(draft, text="otto's & more"), headers={"HX-Request": "true"})
    client.force_login(reviewer)
    response = client.post(f"/policies/{v1.policy_id}/draft/", stale, headers={"HX-Request": "true"})
    assert response.status_code == 409
    html = response.content.decode()
    assert "otto saved this draft" in html
    # Their text is shown (escaped) before a second Save can replace it, and the user's own is kept.
    assert 'id="their-text"' in html and "otto&#x27;s &amp; more" in html
    assert ">mine</textarea>" in html and "Saving again replaces their version with yours" in html
    draft.refresh_from_db()
    assert draft.text == "otto's & more"


def test_rubric_errors_are_shown_beside_their_field(client, reviewer):
    v1 = publish_policy()
    draft = policy_draft_start(policy=v1.policy, user=reviewer)
    client.force_login(reviewer)
    response = client.post(f"/policies/{v1.policy_id}/draft/", editor_post(draft, **{"dim-0-level-2-definition": ""}),
                           headers={"HX-Request": "true"})
    assert response.status_code == 422
    html = response.content.decode()
    assert 'name="dim-0-level-2-definition" value="" aria-invalid="true"' in html
    assert "must not be empty" in html


def test_the_rubric_editor_adds_and_removes_dimensions_without_saving(client, reviewer):
    v1 = publish_policy()
    draft = policy_draft_start(policy=v1.policy, user=reviewer)
    client.force_login(reviewer)
    html = client.post(f"/policies/{v1.policy_id}/draft/rubric/", editor_post(draft, op="add-dim")).content.decode()
    assert 'name="dim-count" value="2"' in html and 'name="dim-1-key"' in html
    html = client.post(f"/policies/{v1.policy_id}/draft/rubric/", editor_post(draft, op="remove-level-0-3")).content.decode()
    assert 'name="dim-0-level-count" value="3"' in html
    draft.refresh_from_db()
    assert draft.lock_version == 1


def test_the_preview_renders_markdown_and_neutralises_html(client, reviewer):
    v1 = publish_policy()
    client.force_login(reviewer)
    html = client.post(f"/policies/{v1.policy_id}/draft/preview/", {"text": "## Hi\n\n<script>alert(1)</script>"}).content.decode()
    assert '<h2 id="clause-hi">Hi</h2>' in html
    assert "<script>" not in html


def test_reviewers_cannot_publish_and_the_page_says_so(client, reviewer):
    v1 = publish_policy()
    draft = policy_draft_start(policy=v1.policy, user=reviewer)
    client.force_login(reviewer)
    assert "Only admins publish" in client.get(f"/policies/{v1.policy_id}/draft/").content.decode()
    client.post(f"/policies/{v1.policy_id}/draft/publish/", {"change_note": "x", "lock_version": draft.lock_version})
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_analysts_cannot_edit(client, analyst):
    v1 = publish_policy()
    client.force_login(analyst)
    response = client.post(f"/policies/{v1.policy_id}/draft/start/")
    assert v1.policy.current_draft() is None
    assert response.status_code == 403  # the role check comes first (tests/test_role_matrix.py)


def test_the_diff_shows_text_and_rubric_changes(client, reviewer):
    v1 = publish_policy()
    v2 = publish_next(v1, text=v1.text + "\n## Freshness\n\nPrefer current <b>facts</b>.\n", rubric=rubric_json(FRESHNESS))
    client.force_login(reviewer)
    html = client.get(f"/policies/{v1.policy_id}/diff/?a={v1.pk}&b={v2.pk}").content.decode()
    assert "freshness" in html and "added" in html
    assert "Prefer current &lt;b&gt;facts&lt;/b&gt;." in html
