"""The labelling page: reviewers only, untrusted text escaped, htmx swaps in the next item."""

import pytest

from review.models import Assignment, HumanLabel
from review.services import human_label_submit
from traffic.models import Document
from tests.factories import UserFactory, review_queue

pytestmark = pytest.mark.django_db


@pytest.fixture
def rita():
    return UserFactory(username="rita", roles=["reviewer"])


def test_the_page_shows_query_result_rubric_and_shortcuts(client, rita):
    queue = review_queue(reviewers=[rita], overlap=1)
    client.force_login(rita)
    html = client.get(f"/review/queues/{queue.pk}/label/").content.decode()
    assert "query number" in html and "passage q" in html
    assert "Perfectly relevant" in html and "The passage is dedicated to the query" in html
    assert 'name="dim-relevance"' in html and "Keyboard shortcuts" in html
    assert "review/label.js" in html


def test_a_reviewer_outside_the_queue_and_an_analyst_get_403(client, rita):
    queue = review_queue(reviewers=[rita], overlap=1)
    client.force_login(UserFactory(username="otto", roles=["reviewer"]))
    assert client.get(f"/review/queues/{queue.pk}/label/").status_code == 403
    client.force_login(UserFactory(username="andy", roles=["analyst"]))
    assert client.get(f"/review/queues/{queue.pk}/label/").status_code == 403


def test_a_script_in_a_document_renders_inert(client, rita):
    queue = review_queue(reviewers=[rita], overlap=1)
    Document.objects.update(title="<script>alert('t')</script>", body="<img src=x onerror=alert(1)><script>alert(2)</script>",
                            url="javascript:alert(3)")
    client.force_login(rita)
    html = client.get(f"/review/queues/{queue.pk}/label/").content.decode()
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html
    assert 'href="javascript:' not in html


def test_an_htmx_submit_records_the_label_and_swaps_in_the_next_item(client, rita):
    queue = review_queue(reviewers=[rita], overlap=1)
    client.force_login(rita)
    client.get(f"/review/queues/{queue.pk}/label/")
    assignment = Assignment.objects.get(reviewer=rita)
    response = client.post(f"/review/queues/{queue.pk}/label/{assignment.pk}/submit/",
                           {"dim-relevance": "2", "rationale": "ok", "time_spent_ms": "1234"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith('<div id="labeller"')
    assert "<html" not in html and "You: <strong>1</strong> labelled" in html
    label = HumanLabel.objects.get()
    assert (label.labels, label.time_spent_ms, label.rationale) == ({"relevance": 2}, 1234, "ok")


def test_a_missing_level_is_shown_and_nothing_saved(client, rita):
    queue = review_queue(reviewers=[rita], overlap=1)
    client.force_login(rita)
    client.get(f"/review/queues/{queue.pk}/label/")
    assignment = Assignment.objects.get(reviewer=rita)
    response = client.post(f"/review/queues/{queue.pk}/label/{assignment.pk}/submit/", {"rationale": "x"},
                           HTTP_HX_REQUEST="true")
    assert response.status_code == 422  # sage.js swaps a 4xx fragment rendered for #labeller
    assert "missing label for &#x27;relevance&#x27;" in response.content.decode()
    assert not HumanLabel.objects.exists()


def test_the_label_form_is_a_real_post_form_even_before_htmx_takes_it_over(client, rita):
    # A submit in the moment before htmx processes a new item's form is a native one: it must post
    # the labels to the submit URL, never GET them into the page's URL.
    queue = review_queue(reviewers=[rita], overlap=1, queries=2, depth=1)
    client.force_login(rita)
    html = client.get(f"/review/queues/{queue.pk}/label/").content.decode()
    assignment = Assignment.objects.get(reviewer=rita)
    submit = f"/review/queues/{queue.pk}/label/{assignment.pk}/submit/"
    assert f'<form id="label-form" method="post" action="{submit}"' in html
    assert 'name="csrfmiddlewaretoken"' in html.split('id="label-form"')[1].split("</form>")[0]
    response = client.post(submit, {"dim-relevance": "1"})
    assert response.status_code == 302 and response["Location"] == f"/review/queues/{queue.pk}/label/"
    assert HumanLabel.objects.get().labels == {"relevance": 1}


def test_skip_and_back(client, rita):
    queue = review_queue(reviewers=[rita], overlap=1)
    client.force_login(rita)
    client.get(f"/review/queues/{queue.pk}/label/")
    first = Assignment.objects.get(reviewer=rita)
    human_label_submit(assignment=first, labels={"relevance": 1}, rationale="", time_spent_ms=1, user=rita)
    client.get(f"/review/queues/{queue.pk}/label/")
    second = Assignment.objects.get(reviewer=rita, status="assigned")
    client.post(f"/review/queues/{queue.pk}/label/{second.pk}/skip/", HTTP_HX_REQUEST="true")
    second.refresh_from_db()
    assert second.status == "skipped"
    third = Assignment.objects.get(reviewer=rita, status="assigned")
    back = client.get(f"/review/queues/{queue.pk}/label/{third.pk}/back/", HTTP_HX_REQUEST="true").content.decode()
    assert f"/label/{first.pk}/submit/" in back and "checked" in back


def test_the_queue_page_shows_progress_and_agreement(client, rita):
    other = UserFactory(username="otto", roles=["reviewer"])
    queue = review_queue(reviewers=[rita, other], overlap=2, queries=2, depth=2)
    from review.services import assignment_next

    for user, values in ((rita, [0, 1, 2, 3]), (other, [0, 1, 2, 2])):
        for value in values:
            assignment = assignment_next(queue=queue, reviewer=user)
            human_label_submit(assignment=assignment, labels={"relevance": value}, rationale="", time_spent_ms=1,
                               user=user)
    client.force_login(rita)
    html = client.get(f"/review/queues/{queue.pk}/").content.decode()
    assert "8 of 8 labels" in html and "Krippendorff" in html
    assert "rita · otto" in html or "otto · rita" in html
    assert "0.750" in html  # exact agreement 3 of 4


def test_an_analyst_creates_a_queue_and_a_reviewer_cannot(client, rita):
    queue = review_queue(reviewers=[rita], overlap=1)
    analyst = UserFactory(username="andy", roles=["analyst"])
    data = {"name": "Q2", "sample": queue.sample.pk, "policy_version": queue.policy_version.pk,
            "reviewers": [rita.pk], "overlap": 1}
    client.force_login(rita)
    assert client.post("/review/queues/", data).status_code == 403
    client.force_login(analyst)
    assert client.post("/review/queues/", data).status_code == 302
    assert "Q2" in client.get("/review/").content.decode()
