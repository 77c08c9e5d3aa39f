"""Make a compact encoder (the base's first N layers, distilled to reproduce its embeddings) for fast students.

    manage.py distill_compact_encoder NAME --layers 3 --training-set ID
    manage.py distill_compact_encoder NAME --layers 3 --texts texts.jsonl

The folder goes to SAGE_DATA_DIR/encoders/NAME; name it as a student's base model (the train form's
"Base model", or StudentConfig.base_model) to train students that judge about twice as fast
(BENCHMARKS.md, "Student throughput"). Texts come from a training set (the queries and passages of its
train and validation splits — never its test queries) or from a JSONL file whose lines hold "text", or
"query" and/or "title"/"body"; every line is checked before any work starts.
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from distill.core.compact import compact_encoder
from distill.core.model import PACKAGED_MINILM, passage_text

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def texts_from_file(path: Path) -> list[str]:
    """Every text of a JSONL file, or CommandError naming the first bad line."""
    texts: list[str] = []
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                row = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise CommandError(f"{path}, line {number}: not valid JSON ({exc})") from None
            if not isinstance(row, dict):
                raise CommandError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}")
            fields = {k: row[k] for k in ("text", "query", "title", "body") if k in row}
            bad = [k for k, v in fields.items() if not isinstance(v, str)]
            if bad:
                raise CommandError(f"{path}, line {number}: {', '.join(bad)} must be a string")
            found = [fields.get("text", ""), fields.get("query", ""),
                     passage_text(fields.get("title", ""), fields.get("body", ""))]
            found = [t for t in found if t.strip()]
            if not found:
                raise CommandError(f"{path}, line {number}: no text (give \"text\", or \"query\" and/or \"title\"/\"body\")")
            texts += found
    return texts


def texts_from_training_set(pk: int) -> list[str]:
    from distill.models import TrainingExample, TrainingSet

    if not TrainingSet.objects.filter(pk=pk).exists():
        raise CommandError(f"no training set with id {pk}")
    texts: list[str] = []
    rows = (TrainingExample.objects.filter(training_set_id=pk)
            .exclude(split=TrainingExample.Split.TEST).values_list("query", "title", "body"))
    for query, title, body in rows.iterator():
        texts += [query, passage_text(title, body)]
    return texts


class Command(BaseCommand):
    help = "Distil a compact encoder (first N layers of a base) for fast student judges."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="folder name under SAGE_DATA_DIR/encoders/")
        parser.add_argument("--layers", type=int, required=True, help="transformer layers to keep (fewer = faster)")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--training-set", type=int, help="a training set's id (train and validation texts)")
        source.add_argument("--texts", type=Path, help="a JSONL file of texts")
        parser.add_argument("--base", default=PACKAGED_MINILM, help="the base encoder (default: the packaged MiniLM)")
        parser.add_argument("--epochs", type=int, default=3)
        parser.add_argument("--learning-rate", type=float, default=1e-4)
        parser.add_argument("--max-length", type=int, default=128)
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, **options) -> None:
        name = options["name"]
        if not NAME.fullmatch(name):
            raise CommandError("name: letters, digits, '.', '_' or '-', starting with a letter or digit, at most 100")
        if options["epochs"] < 1:
            raise CommandError("--epochs must be at least 1")
        out_dir = Path(settings.DATA_DIR) / "encoders" / name
        if out_dir.exists():
            raise CommandError(f"encoder {name!r} already exists ({out_dir}); choose another name")
        texts = (texts_from_file(options["texts"]) if options["texts"] is not None
                 else texts_from_training_set(options["training_set"]))
        bar = tqdm(total=0, unit="step", desc=f"compact {name}", disable=options["verbosity"] < 1)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            result = compact_encoder(options["base"], options["layers"], texts, out_dir, epochs=options["epochs"],
                                     learning_rate=options["learning_rate"], max_length=options["max_length"],
                                     seed=options["seed"], progress=progress)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        finally:
            bar.close()
        self.stdout.write(
            f"encoder {name}: {result.layers} of {result.base_layers} layers, {result.texts} texts, "
            f"{result.seconds:.0f} s; fidelity (mean cosine to the base on held-out texts) "
            f"{result.fidelity_before:.3f} cut → {result.fidelity_after:.3f} distilled\n"
            f"train students on it with base model: {out_dir}")
