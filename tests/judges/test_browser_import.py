"""An analyst uploads another tool's labels on an imported judge's page: a typo is caught by the dry
run with its line number and nothing is imported; the fixed file is checked, previewed and confirmed."""

import pytest

from judges.models import JudgeRun
from judges.services import judge_create
from tests.conftest import browser_login, screenshot
from tests.factories import PASSWORD
from tests.judges.helpers import judge_setup


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_analyst_uploads_labels_with_a_dry_run(page, live_server, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    version, sample, analyst = judge_setup(queries=2, depth=3, slug="browser-import", endpoint="local")
    judge_version = judge_create(name="Vendor labels", surface=sample.surface, user=analyst, backend="imported",
                                 model_name="vendor", policy_version=version.policy_version, precedent_k=0)
    keys = [(si.item.query.external_id, si.item.document.external_id)
            for si in sample.sample_items.select_related("item__query", "item__document").order_by("position")]
    lines = ["qid,docno,grade"] + [f"{q},{d},{n % 4}" for n, (q, d) in enumerate(keys)]
    lines[4] = lines[4].replace(",", ";", 1)  # the typo: line 5 has a semicolon for a comma
    typo = tmp_path / "vendor.csv"
    typo.write_text("\n".join(lines) + "\n")

    browser_login(page, live_server, analyst.username, PASSWORD)
    page.goto(f"{live_server.url}/judges/{judge_version.judge_id}/")

    def upload(path) -> None:
        form = page.locator("#judgment-import-form")
        form.locator("select[name=sample]").select_option(str(sample.pk))
        form.locator("input[name=file]").set_input_files(str(path))
        form.locator("textarea[name=label_fields]").fill("relevance=grade")
        form.locator("input[name=query_field]").fill("qid")
        form.locator("input[name=doc_field]").fill("docno")
        assert form.locator("input[name=dry_run]").is_checked()  # a dry run unless the analyst says otherwise
        form.locator("button[type=submit]").click()

    upload(typo)
    errors = page.locator("#import-errors")
    errors.wait_for()
    assert "Nothing was imported" in page.locator("#import-report").inner_text()
    first = errors.locator("tbody tr").first.inner_text()
    assert first.startswith("5") and "2 fields; the header has 3 (qid, docno, grade)" in first, first
    assert page.locator("#confirm-import").count() == 0
    screenshot(page, "judge-import-typo")
    assert not JudgeRun.objects.exists()

    fixed = tmp_path / "vendor-fixed.csv"
    fixed.write_text(typo.read_text().replace(";", ","))
    upload(fixed)
    page.locator("#import-preview").wait_for()
    report = page.locator("#import-report").inner_text()
    assert "6 judgments would be imported" in report and "Nothing has been imported yet" in report
    assert page.locator("#import-preview tbody tr").count() == 6
    screenshot(page, "judge-import-dry-run")
    assert not JudgeRun.objects.exists()

    page.locator("#confirm-import button[type=submit]").click()
    page.wait_for_url("**/judges/runs/*/")
    run = JudgeRun.objects.get()
    assert run.status == "succeeded" and run.done_items == 6
    assert page.locator("#run-export a", has_text="CSV").count() == 1
    screenshot(page, "judge-import-done")
    labels = {j.item.document.external_id: j.labels["relevance"] for j in run.judgments.select_related("item__document")}
    assert labels == {d: n % 4 for n, (_q, d) in enumerate(keys)}
