"""Cadastral numbers of land plots: their format, parsed in one place.

A cadastral number here is `RR-BBB-NNNNNN`: the two-digit region (as on vehicle
plates and in the address code), a three-digit block and a six-digit plot number.
Blocks tell where a plot came from: 000-499 plots under private houses (the world's
`land_plot_of`), 500-799 garden plots, 800-899 farmland, 900-999 plots under
company buildings. A malformed number is `INVALID_IDENTIFIER`, never a lookup.

Pure functions.
"""

from __future__ import annotations

import re

from adapters.population.geography import REGIONS
from govbus.errors import InvalidIdentifier

__all__ = [
    "FARMLAND_BLOCK",
    "GARDEN_BLOCK",
    "OFFICE_BLOCK",
    "cadastral_number",
    "parse_cadastral",
]

GARDEN_BLOCK = 500
FARMLAND_BLOCK = 800
OFFICE_BLOCK = 900
_FORMAT = re.compile(r"(\d{2})-(\d{3})-(\d{6})")
_REGION_CODES = frozenset(r.code for r in REGIONS)


def cadastral_number(region: int, block: int, number: int) -> str:
    """The number of plot `number` (0…999,999,999) in a block range starting at `block`."""
    block_offset, plot = divmod(number, 10**6)
    return f"{region:02d}-{block + block_offset:03d}-{plot:06d}"


def parse_cadastral(text: object, field: str = "cadastral_number") -> str:
    """Validate a cadastral number `RR-BBB-NNNNNN` with a known region."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidIdentifier(f"{field}: a cadastral number RR-BBB-NNNNNN is required")
    value = text.strip()
    match = _FORMAT.fullmatch(value) if value.isascii() else None
    if match is None:
        shown = value if len(value) <= 24 else value[:24] + "…"
        raise InvalidIdentifier(f"{field}: {shown!r} is not a cadastral number RR-BBB-NNNNNN")
    if int(match.group(1)) not in _REGION_CODES:
        raise InvalidIdentifier(f"{field}: {value}: unknown region {match.group(1)}")
    return value
