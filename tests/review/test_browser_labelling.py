"""A reviewer labels three items with the keyboard alone and watches progress move."""

import pytest

from review.models import HumanLabel
from tests.conftest import browser_login, screenshot
from tests.factories import PASSWORD, UserFactory, review_queue


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_reviewer_labels_three_items_with_the_keyboard(page, live_server):
    from policy.demo import COMPLETENESS

    rita = UserFactory(username="rita", roles=["reviewer"])
    queue = review_queue(reviewers=[rita], overlap=1, queries=2, depth=2, extra_dimensions=[COMPLETENESS])
    browser_login(page, live_server, "rita", PASSWORD)
    page.goto(f"{live_server.url}/review/queues/{queue.pk}/label/")
    page.locator("#progress-mine", has_text="You: 0 labelled").wait_for()
    for n, (relevance, completeness) in enumerate([(3, 2), (0, 0), (2, 1)], start=1):
        shown = page.locator("#item-body").inner_text()
        page.keyboard.press(str(relevance))  # sets relevance, moves to completeness
        page.keyboard.press(str(completeness))
        page.keyboard.press("Enter")
        page.locator("#progress-mine", has_text=f"You: {n} labelled").wait_for()
        if n < 3:
            assert page.locator("#item-body").inner_text() != shown
    screenshot(page, "review-labelling")
    labels = list(HumanLabel.objects.order_by("created_at").values_list("labels", flat=True))
    assert labels == [{"relevance": 3, "completeness": 2}, {"relevance": 0, "completeness": 0},
                      {"relevance": 2, "completeness": 1}]
    assert all(t and t > 0 for t in HumanLabel.objects.values_list("time_spent_ms", flat=True))
