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


def _labelling(page, live_server, *, items: int = 2):
    from policy.demo import COMPLETENESS

    rita = UserFactory(username="rita", roles=["reviewer"])
    queue = review_queue(reviewers=[rita], overlap=1, queries=items, depth=1, extra_dimensions=[COMPLETENESS])
    browser_login(page, live_server, "rita", PASSWORD)
    page.goto(f"{live_server.url}/review/queues/{queue.pk}/label/")
    page.locator("#progress-mine", has_text="You: 0 labelled").wait_for()
    return queue


def _checked(page, dimension: str):
    radio = page.locator(f'input[name="dim-{dimension}"]:checked')
    return radio.get_attribute("value") if radio.count() else None


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_digits_after_a_click_go_to_the_next_dimension_not_the_focused_radio(page, live_server):
    _labelling(page, live_server, items=1)
    page.click('input[name="dim-relevance"][value="2"]')  # focus now sits on a relevance radio
    page.keyboard.type("00")
    assert (_checked(page, "relevance"), _checked(page, "completeness")) == ("2", "0")
    page.keyboard.press("ArrowUp")  # moves the current dimension; must not check a neighbouring radio
    assert _checked(page, "relevance") == "2"
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.locator("#progress-mine", has_text="You: 1 labelled").wait_for()
    assert list(HumanLabel.objects.values_list("labels", flat=True)) == [{"relevance": 1, "completeness": 0}]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_keys_typed_before_htmx_takes_over_the_new_item_are_kept_for_it(page, live_server):
    _labelling(page, live_server, items=2)
    # Widen the window between a new item appearing and htmx processing its form (20 ms by default;
    # longer on a slow machine) so that typing into it is certain, not a race.
    page.evaluate("htmx.config.defaultSettleDelay = 600")
    first = page.locator("#item-body").inner_text()
    page.keyboard.type("32\n", delay=0)
    page.wait_for_function("(first) => document.getElementById('item-body').innerText !== first", arg=first)
    page.keyboard.type("10\n", delay=0)  # at once: the new form is not htmx's yet
    page.locator("#progress-mine", has_text="You: 2 labelled").wait_for()
    assert "dim-" not in page.url  # never a native GET with the labels in the URL
    labels = list(HumanLabel.objects.order_by("created_at").values_list("labels", flat=True))
    assert labels == [{"relevance": 3, "completeness": 2}, {"relevance": 1, "completeness": 0}]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_three_items_typed_at_machine_speed_are_labelled_exactly(page, live_server):
    _labelling(page, live_server, items=3)
    page.keyboard.type("32\n00\n21\n", delay=0)
    page.locator("#progress-mine", has_text="You: 3 labelled").wait_for()
    screenshot(page, "review-labelling-machine-speed")
    assert "dim-" not in page.url
    labels = list(HumanLabel.objects.order_by("created_at").values_list("labels", flat=True))
    assert labels == [{"relevance": 3, "completeness": 2}, {"relevance": 0, "completeness": 0},
                      {"relevance": 2, "completeness": 1}]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_refused_label_shows_the_error_beside_the_entered_levels(page, live_server, monkeypatch):
    from review.services import ReviewError

    def refuse(**kwargs):
        raise ReviewError("Level 3 is not allowed here.")

    monkeypatch.setattr("review.views.human_label_submit", refuse)
    _labelling(page, live_server, items=1)
    page.keyboard.type("32\n", delay=0)
    page.locator("#label-error", has_text="Level 3 is not allowed here.").wait_for(timeout=5_000)
    assert (_checked(page, "relevance"), _checked(page, "completeness")) == ("3", "2")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_refused_skip_says_why_and_leaves_the_item_as_it_was(page, live_server):
    queue = _labelling(page, live_server, items=2)
    page.keyboard.type("3", delay=0)
    queue.reviewers.clear()  # taken off the queue while labelling
    page.keyboard.press("s")
    toast = page.locator("#sage-toasts .sage-toast").last
    toast.wait_for(timeout=5_000)
    # The message comes from the styled 403 page (its data-sage-message), not its whole text.
    assert "You are not a reviewer of this queue." in toast.inner_text()
    assert "Go back" not in toast.inner_text()
    assert _checked(page, "relevance") == "3"
    page.keyboard.type("2", delay=0)  # the page still answers keys after the refusal
    assert _checked(page, "completeness") == "2"
