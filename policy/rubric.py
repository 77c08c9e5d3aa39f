"""The rubric: the dimensions of a judgment, each an ordinal scale with a definition per level.

A rubric is stored as JSON on a policy version. `parse_rubric` is the single gate from untrusted JSON
(an editor form, an import, the demo) to a typed `Rubric`; it collects every problem with a field path
(`dimensions[1].levels[2].definition`) so an editor can show each error beside its field.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_DIMENSIONS = 12
MAX_LEVELS = 11


@dataclass(frozen=True)
class Level:
    value: int
    label: str
    definition: str


@dataclass(frozen=True)
class Dimension:
    key: str
    name: str
    description: str
    levels: tuple[Level, ...]
    overall: bool = False
    weight: float | None = None

    @property
    def values(self) -> list[int]:
        return [level.value for level in self.levels]

    @property
    def min_value(self) -> int:
        return self.levels[0].value

    @property
    def max_value(self) -> int:
        return self.levels[-1].value

    def level(self, value: int) -> Level | None:
        return next((lv for lv in self.levels if lv.value == value), None)


@dataclass(frozen=True)
class Rubric:
    dimensions: tuple[Dimension, ...]

    @property
    def overall(self) -> Dimension:
        return next(d for d in self.dimensions if d.overall)

    @property
    def keys(self) -> list[str]:
        return [d.key for d in self.dimensions]

    def dimension(self, key: str) -> Dimension | None:
        return next((d for d in self.dimensions if d.key == key), None)

    def to_json(self) -> dict[str, Any]:
        return {"dimensions": [_dimension_json(d) for d in self.dimensions]}

    @property
    def hash(self) -> str:
        """Content hash: the rubric version every label records."""
        return rubric_hash(self.to_json())

    def validate_labels(self, labels: Any, *, require_all: bool = True) -> list[str]:
        """Problems with a {dimension key: level value} mapping; empty when valid."""
        if not isinstance(labels, dict):
            return ["labels must be an object mapping dimension keys to levels"]
        problems = []
        for key in labels:
            if self.dimension(key) is None:
                problems.append(f"unknown dimension {key!r}")
        for dim in self.dimensions:
            if dim.key not in labels:
                if require_all:
                    problems.append(f"missing label for {dim.key!r}")
                continue
            value = labels[dim.key]
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{dim.key}: {value!r} is not an integer level")
            elif value not in dim.values:
                problems.append(f"{dim.key}: {value} is outside the scale {dim.min_value}-{dim.max_value}")
        return problems


def _dimension_json(d: Dimension) -> dict[str, Any]:
    data = asdict(d)
    data["levels"] = [asdict(level) for level in d.levels]
    if d.weight is None:
        data.pop("weight")
    return data


def rubric_hash(data: dict[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass
class RubricError(ValueError):
    """Every problem found, keyed by field path ('' for the rubric as a whole)."""

    errors: dict[str, list[str]] = field(default_factory=dict)

    def add(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)

    def __str__(self) -> str:
        return "; ".join(f"{path or 'rubric'}: {msg}" for path, msgs in self.errors.items() for msg in msgs)


def _text(raw: Any, path: str, err: RubricError, *, required: bool = True, max_len: int = 2000) -> str:
    if raw is None:
        raw = ""
    if not isinstance(raw, str):
        err.add(path, "must be text")
        return ""
    value = raw.strip()
    if required and not value:
        err.add(path, "must not be empty")
    if len(value) > max_len:
        err.add(path, f"must be at most {max_len} characters")
    return value


def parse_rubric(data: Any) -> Rubric:
    """Validate untrusted rubric JSON; raises RubricError listing every problem."""
    err = RubricError()
    if not isinstance(data, dict) or not isinstance(data.get("dimensions"), list):
        err.add("", "a rubric is an object with a list of dimensions")
        raise err
    raw_dims = data["dimensions"]
    if not raw_dims:
        err.add("dimensions", "add at least one dimension")
    if len(raw_dims) > MAX_DIMENSIONS:
        err.add("dimensions", f"at most {MAX_DIMENSIONS} dimensions")
    dims: list[Dimension] = []
    seen_keys: set[str] = set()
    for i, raw in enumerate(raw_dims):
        p = f"dimensions[{i}]"
        if not isinstance(raw, dict):
            err.add(p, "must be an object")
            continue
        key = _text(raw.get("key"), f"{p}.key", err, max_len=40)
        if key and not KEY_RE.match(key):
            err.add(f"{p}.key", "use lowercase letters, digits and _ (starting with a letter)")
        if key in seen_keys:
            err.add(f"{p}.key", f"duplicate key {key!r}")
        seen_keys.add(key)
        name = _text(raw.get("name"), f"{p}.name", err, max_len=120)
        description = _text(raw.get("description"), f"{p}.description", err)
        weight = raw.get("weight")
        if weight in ("", None):
            weight = None
        else:
            try:
                weight = float(weight)
                if weight <= 0:
                    err.add(f"{p}.weight", "must be positive")
            except (TypeError, ValueError):
                err.add(f"{p}.weight", "must be a number")
                weight = None
        levels: list[Level] = []
        raw_levels = raw.get("levels")
        if not isinstance(raw_levels, list) or len(raw_levels) < 2:
            err.add(f"{p}.levels", "a scale needs at least two levels")
            raw_levels = raw_levels if isinstance(raw_levels, list) else []
        if len(raw_levels) > MAX_LEVELS:
            err.add(f"{p}.levels", f"at most {MAX_LEVELS} levels")
        for j, raw_level in enumerate(raw_levels):
            lp = f"{p}.levels[{j}]"
            if not isinstance(raw_level, dict):
                err.add(lp, "must be an object")
                continue
            value = raw_level.get("value")
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value.strip())
            if isinstance(value, bool) or not isinstance(value, int):
                err.add(f"{lp}.value", "must be an integer")
                value = None
            label = _text(raw_level.get("label"), f"{lp}.label", err, max_len=80)
            definition = _text(raw_level.get("definition"), f"{lp}.definition", err)
            if value is not None:
                levels.append(Level(value=value, label=label, definition=definition))
        levels.sort(key=lambda lv: lv.value)
        values = [lv.value for lv in levels]
        if len(set(values)) != len(values):
            err.add(f"{p}.levels", "level values must be distinct")
        elif values and values != list(range(values[0], values[0] + len(values))):
            missing = sorted(set(range(values[0], values[-1] + 1)) - set(values))
            err.add(f"{p}.levels", f"the scale has gaps: missing {', '.join(map(str, missing))}")
        overall = raw.get("overall") in (True, "true", "on", "1", 1)
        dims.append(Dimension(key=key, name=name, description=description, levels=tuple(levels),
                              overall=overall, weight=weight))
    overall_count = sum(d.overall for d in dims)
    if dims and overall_count == 0:
        err.add("overall", "mark one dimension as the overall label")
    elif overall_count > 1:
        err.add("overall", "only one dimension can be the overall label")
    if err.errors:
        raise err
    return Rubric(dimensions=tuple(dims))


def trec_relevance_dimension() -> dict[str, Any]:
    """The TREC Deep Learning passage relevance scale, the overall dimension of the demo policy."""
    return {
        "key": "relevance",
        "name": "Overall relevance",
        "description": "How well the passage answers the query (TREC Deep Learning passage guidelines).",
        "overall": True,
        "levels": [
            {"value": 0, "label": "Irrelevant", "definition": "The passage has nothing to do with the query."},
            {"value": 1, "label": "Related", "definition": "The passage seems related to the query but does not answer it."},
            {"value": 2, "label": "Highly relevant", "definition": "The passage has some answer for the query, but the answer may be a bit unclear, or hidden amongst extraneous information."},
            {"value": 3, "label": "Perfectly relevant", "definition": "The passage is dedicated to the query and contains the exact answer."},
        ],
    }
