"""A small student trained once per test session (a few steps with distill.core.train on CPU) and a
fixed set of pairs of mixed lengths and relevance, shared by the inference tests."""

from __future__ import annotations

import itertools
from pathlib import Path

from distill.core.model import DimensionSpec, StudentConfig, passage_text
from distill.core.predict import Pair

RELEVANCE = DimensionSpec("relevance", (0, 1, 2, 3))
SAFETY = DimensionSpec("safety", (1, 2))

TOPICS: dict[str, tuple[str, ...]] = {
    "how do volcanoes erupt": (
        "Magma rises through the crust and gas pressure forces it out of the volcano's vent.",
        "Volcanic eruptions happen when pressure in the magma chamber exceeds the strength of the rock above.",
        "Explosive eruptions throw ash high into the air, while effusive ones let lava flow slowly downhill."),
    "best way to brew green tea": (
        "Steep green tea leaves at 80 degrees for two minutes to avoid bitterness.",
        "Green tea should be brewed below boiling; water that is too hot makes it bitter.",
        "Use about one teaspoon of leaves per cup and do not steep them for longer than three minutes."),
    "symptoms of the flu": (
        "Influenza causes fever, chills, muscle aches, cough and fatigue.",
        "The flu usually brings a sudden fever, sore throat and body aches that last about a week.",
        "Children with the flu may also vomit or have diarrhoea, which is rarer in adults."),
    "how to change a bike tire": (
        "Remove the wheel, lever the tire off the rim, replace the tube and reinflate it.",
        "To fix a flat, take off the wheel, pull out the inner tube and fit a new one.",
        "Check the inside of the tire for thorns or glass before fitting the new tube."),
    "history of the roman empire": (
        "Augustus became the first Roman emperor in 27 BC after the republic collapsed.",
        "The Western Roman Empire fell in 476 AD when Odoacer deposed Romulus Augustulus.",
        "At its height under Trajan the empire stretched from Britain to Mesopotamia."),
    "python list comprehension": (
        "A list comprehension builds a list from an iterable: [x * 2 for x in items].",
        "In Python, [f(x) for x in xs if cond(x)] filters and maps in one expression.",
        "Nested comprehensions read left to right, like the for loops they replace."),
}


def training_examples():
    from distill.core.train import Example

    out = []
    topics = list(TOPICS)
    for n, query in enumerate(topics):
        other = TOPICS[topics[(n + 1) % len(topics)]]
        good, fair, extra = TOPICS[query]
        out += [
            Example(str(n), query, passage_text("", good + " " + extra), {"relevance": [0, 0, 0, 1], "safety": [0, 1]}),
            Example(str(n), query, passage_text("Notes", fair), {"relevance": [0, 0, 1, 0], "safety": [0, 1]}),
            Example(str(n), query, passage_text("", other[0]), {"relevance": [1, 0, 0, 0], "safety": [1, 0]}),
            Example(str(n), query, passage_text("", other[1] + " " + query.split()[-1]),
                    {"relevance": [0, 1, 0, 0], "safety": [1, 0]}),
        ]
    return out


def train_small_student(base: Path, features: str = "") -> Path:
    """The model folder of a small trained student, trained the first time it is asked for under `base`.

    The encoder is frozen (learning_rate 0: only the heads learn), so training costs forward passes only
    and the test session stays fast; the heads still learn enough to give varied labels."""
    from distill.core.train import train_student

    folder = base / ("student-" + features if features else "student")
    model_dir = folder / "model"
    if not (model_dir / "manifest.json").is_file():
        examples = training_examples()
        config = StudentConfig(dimensions=[RELEVANCE, SAFETY], max_length=64, batch_size=8, epochs=3, patience=3,
                               learning_rate=0.0, head_learning_rate=5e-2, weight_decay=0.01, seed=5,
                               # the joint student with random heads gives the varied labels the agreement tests
                               # need (the cosine start would make the heads the cosine's few cuts)
                               features=features or "joint", cosine_init=False)
        train_student(examples[:16], examples[16:], config, folder)
    return model_dir


def fixed_pairs() -> list[Pair]:
    """Every query against passages of every topic, one to three sentences long: 6 x 6 x 3 = 108 pairs of
    mixed lengths (input order deliberately not sorted by length)."""
    pairs = []
    for query, topic in itertools.product(TOPICS, TOPICS):
        a, b, c = TOPICS[topic]
        for title, body in (("", a), ("A note", b + " " + c), ("", c + " " + a + " " + b)):
            pairs.append(Pair(query=query, title=title, body=body))
    return pairs
