"""The Content-Security-Policy holds in a real browser: pages of the demo render (charts included) and
report no violation, and an error the server refuses a form with is brought into view and focused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.apps import apps
from django.urls import reverse

from tests.conftest import ROOT, screenshot, wait_for

DEMO_PASSWORD = "sage-demo"

# Runs before any page script: records what the browser refused, as events and as console errors.
WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.fixture
def demo(transactional_db, settings):
    """The demo's data, loaded for each test: the live server's tests run on a database emptied after
    each. Its student is not trained (no page here shows one)."""
    from django.core.management import call_command

    from tests.test_hostile_params import _path_kwargs

    settings.SAGE_DISTILL_DEMO_TRAIN = False
    call_command("load_demo", verbosity=0)
    return _path_kwargs()


def _watch(page) -> list[str]:
    console: list[str] = []
    page.add_init_script(WATCH_CSP)
    page.on("console", lambda msg: console.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.on("pageerror", lambda exc: console.append(f"page error: {exc}"))
    return console


def _violations(page, console: list[str]) -> list[str]:
    return [*page.evaluate("window.__csp || []"), *console]


def _login(page, live_server, username: str = "demo-admin") -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


# What the policy refuses in a template: an inline handler, a style attribute, a <style> element, a
# javascript: URL, a <script> with a body (json_script's data blocks are not code, and are allowed).
INLINE = re.compile(r"""\son[a-z]+\s*=|\sstyle\s*=|<style[\s>]|javascript:|<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>\s*[^<\s]""",
                    re.I)
# The 500 and CSRF pages render with no static files; their one <style> is allowed by its hash.
STANDALONE = "_standalone_error.html"


def test_no_template_carries_inline_code_or_style():
    from django.conf import settings

    roots = [Path(d) for t in settings.TEMPLATES for d in t["DIRS"]]
    # Ours only: third-party templates (the admin's) are theirs to keep.
    roots += [Path(app.path) / "templates" for app in apps.get_app_configs()
              if app.path.startswith(str(ROOT)) and "site-packages" not in app.path]
    found = []
    for root in roots:
        for path in root.rglob("*.html"):
            text = re.sub(r"\{#.*?#\}", "", path.read_text(), flags=re.S)  # comments may name what is refused
            for match in INLINE.finditer(text):
                if path.name == STANDALONE and match.group().lower().startswith("<style"):
                    continue
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{path.relative_to(ROOT)}:{line}: {match.group().strip()}")
    assert not found, "inline code or style the Content-Security-Policy refuses (move it to static files):\n" + \
        "\n".join(found)


def test_the_policy_header_forbids_inline_script_and_style(client):
    policy = client.get("/accounts/login/")["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["script-src"] == "'self'"
    assert "unsafe" not in directives["style-src"] and "'self'" in directives["style-src"]
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"


@pytest.mark.browser
def test_pages_render_with_no_csp_violation_and_the_charts_draw(page, live_server, demo):
    console = _watch(page)
    page.goto(f"{live_server.url}/accounts/login/")
    page.wait_for_load_state("networkidle")
    seen = {"login": _violations(page, console)}
    _login(page, live_server)

    pages = {
        "home": "/",
        "calibration": reverse("calibration:index"),
        "calibration-run": reverse("calibration:run", kwargs=demo["calibration:run"]),
        "judge-run": reverse("judges:run", kwargs=demo["judges:run"]),
        "review-label": reverse("review:label", kwargs=demo["review:label"]),
        "comparisons": reverse("comparisons:index"),
        "comparison": reverse("comparisons:detail", kwargs=demo["comparisons:detail"]),
    }
    for name, path in pages.items():
        console.clear()
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, f"{name} {path}: {response.status}"
        assert "Content-Security-Policy" in {k.title(): v for k, v in response.headers.items()}
        page.wait_for_load_state("networkidle")
        if name == "calibration":
            # vega-embed drew every chart as SVG (an error would leave "Chart failed to render").
            charts = page.locator("[data-vega-spec]")
            assert charts.count() > 0
            for i in range(charts.count()):
                charts.nth(i).locator("svg.marks").wait_for()
            assert "Chart failed" not in page.content()
            assert screenshot(page, "csp-calibration").stat().st_size > 10_000
        seen[name] = _violations(page, console)

    # <select data-autosubmit> (no inline onchange any more) still submits its filter form.
    console.clear()
    page.goto(f"{live_server.url}{reverse('calibration:index')}")
    select = page.locator("select[name=metric]")
    target = select.locator("option").last.get_attribute("value")
    with page.expect_navigation():
        select.select_option(target)
    assert f"metric={target}" in page.url
    seen["autosubmit"] = _violations(page, console)

    assert not any(seen.values()), {name: found for name, found in seen.items() if found}
    # The watch itself works: code the policy forbids is reported.
    # (DevTools' own evaluate may eval; an inline script element and a style attribute it adds may not.)
    page.evaluate("""() => {
      const script = document.createElement("script");
      script.textContent = "window.__inlineRan = true;";
      document.body.append(script);
      document.body.insertAdjacentHTML("beforeend", '<p style="color: red">inline style</p>');
    }""")
    wait_for(lambda: len(_violations(page, console)) >= 2, timeout=5, message="the watch to report both")
    found = " ".join(_violations(page, console))
    assert "script-src" in found and "style-src" in found, found
    assert page.evaluate("window.__inlineRan === undefined")


@pytest.mark.browser
def test_an_error_below_the_fold_is_scrolled_into_view_and_focused(page, live_server, demo):
    """The judge form is long; a refused value in its last field is far below the fold."""
    console = _watch(page)
    page.set_viewport_size({"width": 1000, "height": 600})
    _login(page, live_server)
    page.goto(f"{live_server.url}{reverse('judges:new')}")
    page.fill("input[name=name]", "csp-fold-test")
    page.locator("select[name=surface]").select_option(index=1)
    page.locator("select[name=policy_version]").select_option(index=1)
    # The form's last field (shown for the default, token-priced backend): a value the browser accepts
    # (a number, a multiple of the step) with more digits than the server keeps.
    page.fill("input[name=price_out_per_m]", "100000000000")
    with page.expect_navigation():
        page.click("main form button[type=submit]")
    error = page.locator("main .errorlist").first
    error.wait_for()
    state = page.evaluate("""() => {
      const el = document.querySelector("main .errorlist");
      const box = el.getBoundingClientRect();
      // Focus lands on the error, or on the refused field it belongs to (Django marks it aria-invalid).
      const active = document.activeElement;
      const focused = active === el || (active.getAttribute("aria-invalid") === "true" && active.closest("label") === el.closest("label"));
      return {top: box.top, bottom: box.bottom, offset: box.top + window.scrollY, height: window.innerHeight,
              focused, active: active.outerHTML.slice(0, 120), text: el.textContent};
    }""")
    assert state["offset"] > state["height"], f"the error is not below the fold: {state}"
    assert 0 <= state["top"] and state["bottom"] <= state["height"], f"the error is not in view: {state}"
    assert state["focused"], state
    assert "digits" in state["text"]
    assert not _violations(page, console)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_error_an_htmx_save_swaps_in_off_screen_is_scrolled_to_and_focused(page, live_server):
    """The policy editor saves by htmx; a refused rubric comes back as a 4xx fragment swapped in place.
    Its first error sits above the save button the user scrolled down to."""
    from policy.services import policy_draft_start
    from tests.conftest import browser_login
    from tests.factories import PASSWORD, UserFactory
    from tests.policy_factories import publish_policy

    console = _watch(page)
    page.set_viewport_size({"width": 1000, "height": 450})
    v1 = publish_policy()
    policy_draft_start(policy=v1.policy, user=UserFactory(username="rita", roles=["reviewer"]))
    browser_login(page, live_server, "rita", PASSWORD)
    page.goto(f"{live_server.url}/policies/{v1.policy_id}/draft/")
    page.fill('input[name="dim-0-key"]', "")
    page.locator("#save-draft").scroll_into_view_if_needed()
    before = page.evaluate("window.scrollY")
    page.click("#save-draft")
    page.locator("#save-error").wait_for(timeout=5_000)
    page.wait_for_timeout(300)  # afterSettle
    state = page.evaluate("""(before) => {
      const el = document.activeElement;
      const box = el.getBoundingClientRect();
      const offset = box.top + window.scrollY;
      return {tag: el.outerHTML.slice(0, 120), isError: el.matches('[role="alert"], .errorlist, [aria-invalid="true"], .sage-message-error'),
              inView: box.top >= 0 && box.bottom <= window.innerHeight,
              offscreenBefore: offset + box.height < before || offset > before + window.innerHeight};
    }""", before)
    assert state["isError"] and state["inView"], state
    assert state["offscreenBefore"], f"the error was already in view before the save: {state}"
    assert not _violations(page, console)
