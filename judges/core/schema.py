"""The structured-output schema derived from a rubric, and the gate every model answer passes.

`parse_judgment` never fills a gap: an answer with a missing dimension, a label off the scale or text
that is not JSON raises `InvalidOutput`, which the backend turns into one repair turn and then into
a recorded per-item error.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from policy.rubric import Rubric

InvalidKind = Literal["invalid_json", "out_of_scale", "missing_field"]

# Models that ignore the schema often still wrap their JSON in a Markdown code fence.
_CODE_FENCE = re.compile(r"^```(?:json|JSON)?\s*\n?(.*?)\n?```\s*$", re.DOTALL)


class InvalidOutput(ValueError):
    def __init__(self, kind: InvalidKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def rubric_json_schema(rubric: Rubric, rationale_max_chars: int) -> dict[str, Any]:
    """One required integer per dimension, restricted to its levels, and a bounded rationale.

    `rationale` comes first: constrained decoders emit properties in schema order, so the model
    writes its reasons before committing to labels. `maxLength` bounds how long a grammar-driven
    server (llama.cpp) can ramble.
    """
    if rubric.dimension("rationale") is not None:
        # The answer object is flat, so a dimension keyed "rationale" would collide with the text.
        raise ValueError("a rubric dimension cannot be keyed 'rationale' in the judge schema")
    properties: dict[str, Any] = {
        "rationale": {"type": "string", "maxLength": rationale_max_chars},
    }
    for dim in rubric.dimensions:
        properties[dim.key] = {
            "type": "integer",
            "enum": list(dim.values),
            "minimum": dim.min_value,
            "maximum": dim.max_value,
            "description": f"{dim.name}: " + "; ".join(f"{lv.value} = {lv.label}" for lv in dim.levels),
        }
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _strip_code_fence(raw: str) -> str:
    text = raw.strip()
    match = _CODE_FENCE.match(text)
    return match.group(1).strip() if match else text


def parse_judgment(
    raw: str, rubric: Rubric, *, rationale_max_chars: int | None = None
) -> tuple[dict[str, int], str]:
    """(labels, rationale) from a model answer, or InvalidOutput saying what is wrong.

    `strict=False` because llama.cpp's grammar may put raw newlines inside JSON strings.
    An over-long rationale is cut to `rationale_max_chars` (json_object mode on some providers does
    not enforce maxLength); that shortens an explanation, it never invents a label.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidOutput("invalid_json", "the answer was empty")
    text = _strip_code_fence(raw)
    try:
        data = json.loads(text, strict=False)
    except json.JSONDecodeError as exc:
        raise InvalidOutput("invalid_json", f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidOutput("invalid_json", f"expected a JSON object, got {type(data).__name__}")

    unknown = [k for k in data if k != "rationale" and rubric.dimension(k) is None]
    if unknown:
        raise InvalidOutput("invalid_json", f"unknown field(s) {', '.join(map(repr, unknown))}; "
                                            f"expected rationale, {', '.join(rubric.keys)}")
    missing = [k for k in [*rubric.keys, "rationale"] if k not in data]
    if missing:
        raise InvalidOutput("missing_field", f"missing field(s) {', '.join(map(repr, missing))}")
    rationale = data["rationale"]
    if not isinstance(rationale, str):
        raise InvalidOutput("invalid_json", "rationale must be a string")

    labels = {k: data[k] for k in rubric.keys}
    problems = rubric.validate_labels(labels)
    if problems:
        # Whatever validate_labels objects to here is a value problem (non-integer or off the
        # scale): keys were checked above.
        raise InvalidOutput("out_of_scale", "; ".join(problems))
    if rationale_max_chars is not None and len(rationale) > rationale_max_chars:
        rationale = rationale[: rationale_max_chars - 1] + "…"
    return labels, rationale.strip()


def repair_message(error: InvalidOutput, rubric: Rubric) -> str:
    """The follow-up user turn that asks for a corrected answer, naming the exact problem."""
    scales = "; ".join(f"{d.key}: one of {d.values}" for d in rubric.dimensions)
    return (
        f"Your answer could not be used: {error.message}. Reply again with exactly one JSON object "
        f"with the fields rationale (string) and {', '.join(rubric.keys)} (integers: {scales}). "
        "No other text."
    )
