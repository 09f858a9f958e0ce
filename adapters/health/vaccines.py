"""The vaccines of the national immunisation calendar and when each dose is due.

`VACCINES` maps a vaccine code (as the registry records it) to its name and number
of doses; `SCHEDULE` gives the age in days at which the calendar gives each dose
to a child. Doses of one vaccine are at least `MIN_INTERVAL_DAYS` apart.

Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIN_INTERVAL_DAYS", "SCHEDULE", "VACCINES", "Dose", "Vaccine"]

MIN_INTERVAL_DAYS = 28


@dataclass(frozen=True, slots=True)
class Vaccine:
    code: str
    name: str
    doses: int


@dataclass(frozen=True, slots=True)
class Dose:
    code: str
    dose: int
    age_days: int


VACCINES = {
    v.code: v
    for v in (
        Vaccine("BCG", "БЦЖ (туберкулёз)", 1),
        Vaccine("HEPB", "Вирусный гепатит B", 3),
        Vaccine("IPV", "Полиомиелит (ИПВ)", 3),
        Vaccine("DTP", "АКДС (дифтерия, коклюш, столбняк)", 5),
        Vaccine("HIB", "Гемофильная инфекция типа b", 3),
        Vaccine("PCV", "Пневмококковая инфекция", 3),
        Vaccine("MMR", "ККП (корь, краснуха, эпидемический паротит)", 2),
        Vaccine("ADSM", "АДС-М (дифтерия, столбняк)", 1),
        Vaccine("HPV", "Вирус папилломы человека", 1),
        Vaccine("COVID19", "COVID-19", 2),
    )
}

_MONTH = 30
_YEAR = 365
#: The childhood calendar (HPV, for girls of 11 since September 2024, is handled apart).
SCHEDULE: tuple[Dose, ...] = (
    Dose("BCG", 1, 1),
    Dose("HEPB", 1, 1),
    Dose("HEPB", 2, 2 * _MONTH),
    Dose("IPV", 1, 2 * _MONTH),
    Dose("DTP", 1, 2 * _MONTH),
    Dose("HIB", 1, 2 * _MONTH),
    Dose("PCV", 1, 2 * _MONTH),
    Dose("IPV", 2, 3 * _MONTH),
    Dose("DTP", 2, 3 * _MONTH),
    Dose("HIB", 2, 3 * _MONTH),
    Dose("HEPB", 3, 4 * _MONTH),
    Dose("IPV", 3, 4 * _MONTH),
    Dose("DTP", 3, 4 * _MONTH),
    Dose("HIB", 3, 4 * _MONTH),
    Dose("PCV", 2, 4 * _MONTH),
    Dose("PCV", 3, _YEAR),
    Dose("MMR", 1, _YEAR),
    Dose("DTP", 4, 18 * _MONTH),
    Dose("DTP", 5, 6 * _YEAR),
    Dose("MMR", 2, 6 * _YEAR),
    Dose("ADSM", 1, 16 * _YEAR),
)
