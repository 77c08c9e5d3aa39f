"""One way to read query-string and form parameters, so hostile values end as "absent", never as a 500.

`str.isdigit()` accepts "²" and "٣" (int() then raises), `lstrip("-")` lets "--1" through, a 25-digit
id overflows SQLite's 64-bit integers, and a free-form key such as "relevance__gt" becomes an ORM
lookup. Every view reads numbers and names through these helpers instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from django import forms

# ASCII digits only, an optional minus, and few enough digits to fit a signed 64-bit integer.
_INT = re.compile(r"-?[0-9]{1,18}")
# A rubric dimension key, a metric name, a clause anchor: letters, digits, '-' and single '_' — never '__',
# which Django reads as a lookup separator.
_KEY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]|_(?!_)){0,79}")

INT_MAX = 2**63 - 1


def parse_int(raw: object, *, minimum: int | None = None, maximum: int | None = INT_MAX) -> int | None:
    """The integer `raw` spells in plain ASCII within [minimum, maximum], else None."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and _INT.fullmatch(raw.strip()):
        value = int(raw.strip())
    else:
        return None
    if minimum is not None and value < minimum:
        return None
    if maximum is not None and value > maximum:
        return None
    return value


def int_param(data: Mapping[str, str], name: str, default: int | None = None, *, minimum: int | None = None,
              maximum: int | None = INT_MAX) -> int | None:
    """`data[name]` as an int (see `parse_int`), or `default` when absent or malformed."""
    value = parse_int(data.get(name), minimum=minimum, maximum=maximum)
    return default if value is None else value


def id_param(data: Mapping[str, str], name: str) -> int | None:
    """A primary key from `data[name]`: a positive 64-bit integer or None."""
    return int_param(data, name, minimum=1)


def key_param(data: Mapping[str, str], name: str, default: str = "") -> str:
    """A name-like value (dimension key, anchor, slug) or `default`; never contains '__'."""
    raw = data.get(name, "")
    return raw if isinstance(raw, str) and _KEY.fullmatch(raw) else default


def is_key(value: str) -> bool:
    return bool(_KEY.fullmatch(value))


def choice_param(data: Mapping[str, str], name: str, choices: Iterable[str], default: str = "") -> str:
    raw = data.get(name, "")
    return raw if raw in set(choices) else default


class IdsChoiceField(forms.ModelMultipleChoiceField):
    """Django's multiple-choice field sends every posted value into `pk__in`, where a 25-digit value
    overflows SQLite (OverflowError, a 500). Values that are not ids are refused first."""

    def _check_values(self, value):  # type: ignore[no-untyped-def]
        for pk in value:
            if parse_int(str(pk), minimum=1) is None:
                raise forms.ValidationError(self.error_messages["invalid_pk_value"], code="invalid_pk_value",
                                            params={"pk": pk})
        return super()._check_values(value)
