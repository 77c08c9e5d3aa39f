"""`./run test` runs two passes — the suite on PostgreSQL + Redis, then the `embedded` tests on SQLite
+ the filesystem broker — and fails when either fails (issue 12). Python is replaced here by a
stand-in that records each pass and exits with the code it is told to."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FAKE_PYTHON = """#!/usr/bin/env bash
if [[ " $* " == *" -m embedded "* ]]; then pass=embedded; else pass=main; fi
echo "$pass|$*|${DATABASE_URL-unset}|${CELERY_BROKER_URL-unset}|$SAGE_DATA_DIR" >> "$RECORD"
if [ "$pass" = embedded ]; then exit "$EMBEDDED_RC"; else exit "$MAIN_RC"; fi
"""


def passes(tmp_path: Path, main_rc: int, embedded_rc: int, *args: str) -> tuple[int, list[list[str]]]:
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    record = tmp_path / "record"
    env = {**os.environ, "RECORD": str(record), "MAIN_RC": str(main_rc), "EMBEDDED_RC": str(embedded_rc),
           "DATABASE_URL": "postgres://sage@127.0.0.1:1/sage", "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
           "SAGE_DATA_DIR": str(tmp_path / "main-data")}
    env.pop("SAGE_TEST_EMBEDDED", None)
    result = subprocess.run(["bash", "-c", f'source ./run && PY={fake} && test_passes "$@"', "run", *args],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    lines = record.read_text().splitlines() if record.exists() else []
    return result.returncode, [line.split("|") for line in lines]


def test_both_passes_run_and_the_second_is_on_the_embedded_default(tmp_path):
    code, runs = passes(tmp_path, 0, 0)
    assert code == 0
    (main, main_args, main_db, main_broker, main_data), (embedded, args, db, broker, data) = runs
    assert (main, main_db, main_broker) == ("main", "postgres://sage@127.0.0.1:1/sage", "redis://127.0.0.1:1/0")
    assert embedded == "embedded" and "-m embedded" in args
    assert (db, broker) == ("unset", "unset") and data != main_data and data.startswith("/tmp/sage-embedded.")
    assert not Path(data).exists()  # the embedded pass's data folder is removed afterwards


@pytest.mark.parametrize(("main_rc", "embedded_rc"), [(1, 0), (0, 1), (5, 0), (0, 5), (2, 3)])
def test_either_pass_failing_or_collecting_nothing_fails_the_script(tmp_path, main_rc, embedded_rc):
    code, runs = passes(tmp_path, main_rc, embedded_rc)
    assert code != 0 and [r[0] for r in runs] == ["main", "embedded"]


def test_a_selection_without_embedded_tests_passes_and_is_passed_on_to_both(tmp_path):
    code, runs = passes(tmp_path, 0, 5, "tests/policy", "-x")
    assert code == 0 and all(r[1].endswith("tests/policy -x") for r in runs)
    code, _ = passes(tmp_path, 0, 1, "tests/policy", "-x")
    assert code != 0


def test_a_selection_with_its_own_marker_skips_the_embedded_pass_rather_than_rerunning_everything(tmp_path):
    code, runs = passes(tmp_path, 0, 0, "-m", "not browser")
    assert code == 0 and [r[0] for r in runs] == ["main"]
