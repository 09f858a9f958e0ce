"""Parse the fields of an agency request into typed values, or refuse with a vocabulary error.

Identifiers first: every IIN and BIN goes through `govbus.ids` and a bad one is
`INVALID_IDENTIFIER` naming the field; then dates, texts, enums and limits, whose
failures are `INVALID_REQUEST`. Servicers call these before touching their store,
so bad input never reaches a query and changes nothing.

Pure functions; nothing here knows about a particular agency.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from govbus.errors import InvalidIdentifier, InvalidRequest
from govbus.ids import Bin, Iin

__all__ = [
    "bin_field",
    "date_field",
    "enum_field",
    "iin_field",
    "limit_field",
    "optional_date_field",
    "optional_iin_field",
    "text_field",
]


def iin_field(value: str, field: str = "iin") -> Iin:
    """A required IIN."""
    if not value:
        raise InvalidIdentifier(f"{field}: an IIN of 12 digits is required")
    try:
        return Iin.parse(value)
    except InvalidIdentifier as exc:
        raise InvalidIdentifier(f"{field}: {exc.message}") from None


def optional_iin_field(value: str, field: str) -> Iin | None:
    return iin_field(value, field) if value else None


def bin_field(value: str, field: str = "bin") -> Bin:
    if not value:
        raise InvalidIdentifier(f"{field}: a BIN of 12 digits is required")
    try:
        return Bin.parse(value)
    except InvalidIdentifier as exc:
        raise InvalidIdentifier(f"{field}: {exc.message}") from None


def date_field(value: str, field: str) -> dt.date:
    """A required calendar date "YYYY-MM-DD"."""
    if not value:
        raise InvalidRequest(f"{field}: a date YYYY-MM-DD is required")
    if len(value) != 10:
        raise InvalidRequest(f"{field}: {value[:40]!r} is not a date YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{field}: {value!r} is not a date YYYY-MM-DD") from None


def optional_date_field(value: str, field: str) -> dt.date | None:
    return date_field(value, field) if value else None


def text_field(value: str, field: str, *, required: bool = True, max_length: int = 200) -> str:
    """A trimmed text; required ones may not be blank."""
    text = value.strip()
    if required and not text:
        raise InvalidRequest(f"{field} is required")
    if len(text) > max_length:
        raise InvalidRequest(f"{field} is longer than {max_length} characters")
    if any(ord(c) < 32 for c in text):
        raise InvalidRequest(f"{field} contains control characters")
    return text


def enum_field(value: int, field: str, allowed: Collection[int], *, name: str = "") -> int:
    """An enum value that must be one of `allowed` (0 = unspecified is refused unless allowed)."""
    if value not in allowed:
        raise InvalidRequest(f"{field}: {name or 'value'} {value} is not allowed here")
    return value


def limit_field(value: int, *, default: int = 50, maximum: int = 500) -> int:
    if value == 0:
        return default
    if value > maximum:
        raise InvalidRequest(f"limit {value} is above the maximum of {maximum}")
    return value
