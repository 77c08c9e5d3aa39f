"""403, 404 and 500 are SAGE pages that say what happened; the 500 page renders with nothing working."""

import pytest
from django.test import RequestFactory
from django.views.defaults import server_error

from tests.factories import UserFactory, review_queue


def test_the_500_page_renders_without_database_request_or_static_files():
    # No django_db mark: any query would raise. server_error renders with an empty context.
    response = server_error(RequestFactory().get("/anything/"))
    html = response.content.decode()
    assert response.status_code == 500
    assert 'id="error-page"' in html and "data-sage-message" in html and "SAGE" in html
    assert "/static/" not in html  # the failure may be the static files themselves


@pytest.mark.django_db
def test_a_refusal_is_a_styled_page_with_its_reason(client):
    rita = UserFactory(username="rita", roles=["reviewer"])
    queue = review_queue(reviewers=[rita], overlap=1, queries=1, depth=1)
    client.force_login(UserFactory(username="andy", roles=["analyst"]))
    response = client.get(f"/review/queues/{queue.pk}/label/")
    html = response.content.decode()
    assert response.status_code == 403
    assert 'id="error-page"' in html and "sage-header" in html
    assert "You are not a reviewer of this queue." in html and "analyst" in html


@pytest.mark.django_db
def test_a_missing_page_is_a_styled_404(client):
    client.force_login(UserFactory(username="rita", roles=["reviewer"]))
    response = client.get("/policies/999999/")
    html = response.content.decode()
    assert response.status_code == 404
    assert 'id="error-page"' in html and "sage-header" in html and "/policies/999999/" in html


@pytest.mark.django_db
def test_a_form_without_its_csrf_token_gets_a_page_that_says_nothing_was_saved():
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(UserFactory(username="rita", roles=["reviewer"]))
    response = client.post("/policies/new/", {"name": "x"})
    html = response.content.decode()
    assert response.status_code == 403
    assert 'id="error-page"' in html and "Nothing was saved" in html and "/static/" not in html
