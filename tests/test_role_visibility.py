"""Each role sees only the forms and buttons it may use, or a sentence saying why not — never a form
whose submit ends in a 403 that throws away what was typed."""

import pytest

from calibration.models import Disagreement
from calibration.services import disagreements_refresh
from policy.services import policy_draft_start
from tests.calibration.helpers import calibrated_run
from tests.factories import UserFactory, review_queue
from tests.policy_factories import publish_policy


def _disagreement():
    run, _items, _analyst = calibrated_run(judge_labels=[3, 0, 1, 2], human_labels=[[0, 0, 1, 2]])
    disagreements_refresh(run=run, min_distance=2)
    return Disagreement.objects.get()


@pytest.mark.django_db
def test_an_analyst_sees_why_not_instead_of_the_resolve_form(client):
    d = _disagreement()
    client.force_login(UserFactory(username="andy", roles=["analyst"]))
    html = client.get(f"/calibration/triage/{d.pk}/").content.decode()
    assert 'id="resolve-form"' not in html and 'id="triage-note"' not in html
    assert 'id="triage-role-note"' in html and "Only reviewers and admins resolve" in html


@pytest.mark.django_db
def test_a_reviewer_still_gets_the_resolve_form(client):
    d = _disagreement()
    client.force_login(UserFactory(username="rita", roles=["reviewer"]))
    html = client.get(f"/calibration/triage/{d.pk}/").content.decode()
    assert 'id="resolve-form"' in html and 'id="triage-role-note"' not in html


@pytest.mark.django_db
def test_review_lists_label_only_on_the_queues_a_user_may_label(client):
    rita = UserFactory(username="rita", roles=["reviewer"])
    queue = review_queue(reviewers=[rita], overlap=1, queries=1, depth=1)
    label_url = f"/review/queues/{queue.pk}/label/"

    client.force_login(UserFactory(username="andy", roles=["analyst"]))
    index = client.get("/review/").content.decode()
    assert queue.name in index and label_url not in index and "not your queue to label" in index
    detail = client.get(f"/review/queues/{queue.pk}/").content.decode()
    assert 'id="start-labelling"' not in detail and 'id="labelling-reason"' in detail

    client.force_login(rita)
    assert label_url in client.get("/review/").content.decode()
    assert 'id="start-labelling"' in client.get(f"/review/queues/{queue.pk}/").content.decode()


@pytest.mark.django_db
def test_a_queue_member_without_the_reviewer_role_gets_no_label_button(client):
    # _queue_for_reviewer refuses them too: membership alone does not let one label.
    andy = UserFactory(username="andy", roles=["analyst"])
    queue = review_queue(reviewers=[andy], overlap=1, queries=1, depth=1)
    client.force_login(andy)
    assert f"/review/queues/{queue.pk}/label/" not in client.get("/review/").content.decode()
    assert 'id="start-labelling"' not in client.get(f"/review/queues/{queue.pk}/").content.decode()
    assert client.get(f"/review/queues/{queue.pk}/label/").status_code == 403


@pytest.mark.django_db
def test_an_analyst_reads_a_draft_without_a_form_to_lose(client):
    v1 = publish_policy()
    policy_draft_start(policy=v1.policy, user=UserFactory(username="ada", roles=["admin"]))
    client.force_login(UserFactory(username="andy", roles=["analyst"]))
    assert "Read the open draft" in client.get(f"/policies/{v1.policy_id}/").content.decode()
    html = client.get(f"/policies/{v1.policy_id}/draft/").content.decode()
    assert 'id="readonly-note"' in html
    assert 'id="save-draft"' not in html and "Discard draft" not in html
    assert '<fieldset disabled class="sage-bare-fieldset">' in html


@pytest.mark.django_db
def test_a_reviewer_edits_the_draft(client):
    v1 = publish_policy()
    rita = UserFactory(username="rita", roles=["reviewer"])
    policy_draft_start(policy=v1.policy, user=rita)
    client.force_login(rita)
    html = client.get(f"/policies/{v1.policy_id}/draft/").content.decode()
    assert 'id="save-draft"' in html and 'id="readonly-note"' not in html and "fieldset disabled" not in html
