"""VINs and registration plates: their formats, parsed in one place.

- VIN: 17 characters, digits and capital Latin letters except I, O and Q (ISO 3779).
- Plate: three digits, three letters (a person's) or two letters (a legal entity's),
  and the two-digit region code, e.g. `123ABC02`, `045KZ01`.

A malformed one is `INVALID_IDENTIFIER`, never a lookup. Pure functions.
"""

from __future__ import annotations

import re

from adapters.population.geography import REGIONS
from govbus.errors import InvalidIdentifier

__all__ = ["LETTERS", "company_plate", "parse_plate", "parse_vin", "person_plate"]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VIN = re.compile(r"[A-HJ-NPR-Z0-9]{17}")
_PLATE = re.compile(r"(\d{3})([A-Z]{2,3})(\d{2})")
_REGION_CODES = frozenset(r.code for r in REGIONS)


def parse_vin(text: object, field: str = "vin") -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidIdentifier(f"{field}: a VIN of 17 characters is required")
    value = text.strip().upper()
    if not value.isascii() or not _VIN.fullmatch(value):
        shown = value if len(value) <= 24 else value[:24] + "…"
        raise InvalidIdentifier(
            f"{field}: {shown!r} is not a VIN (17 digits and letters, no I, O or Q)"
        )
    return value


def parse_plate(text: object, field: str = "plate") -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidIdentifier(f"{field}: a registration plate is required")
    value = text.strip().upper().replace(" ", "")
    match = _PLATE.fullmatch(value) if value.isascii() else None
    if match is None:
        shown = value if len(value) <= 24 else value[:24] + "…"
        raise InvalidIdentifier(f"{field}: {shown!r} is not a plate like 123ABC02 or 123AB02")
    if int(match.group(3)) not in _REGION_CODES:
        raise InvalidIdentifier(f"{field}: {value}: unknown region {match.group(3)}")
    return value


def person_plate(number: int, region: int) -> str:
    """A person's plate: number 0…17,575,999 gives three digits and three letters."""
    letters = number // 1000
    return (
        f"{number % 1000:03d}"
        f"{LETTERS[letters // 676 % 26]}{LETTERS[letters // 26 % 26]}{LETTERS[letters % 26]}"
        f"{region:02d}"
    )


def company_plate(number: int, region: int) -> str:
    """A legal entity's plate: number 0…675,999 gives three digits and two letters."""
    letters = number // 1000
    return f"{number % 1000:03d}{LETTERS[letters // 26 % 26]}{LETTERS[letters % 26]}{region:02d}"
