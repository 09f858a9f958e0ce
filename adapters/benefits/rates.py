"""Benefit rates of the ГЦВП: the monthly calculation index (МРП) and what is paid in it.

Child-related benefits are set in МРП (месячный расчётный показатель), fixed by the
budget law each year; amounts here are in tiyn: an amount of `c` hundredths of an
МРП worth `m` tenge is `m × c` tiyn. Retirement ages follow the pension law (women's
age rose from 58 in 2017 to 61 in 2023, where it stays; men's is 63).

Pure data and functions.
"""

from __future__ import annotations

import datetime as dt
import functools

from govbus.ids import Sex

__all__ = [
    "BIRTH_GRANT_MRP",
    "CHILDCARE_MRP",
    "FUNERAL_GRANT_MRP",
    "MRP",
    "anniversary",
    "birth_grant_tiyn",
    "childcare_end",
    "childcare_tiyn",
    "funeral_grant_tiyn",
    "large_family_tiyn",
    "mrp",
    "retirement_age_halves",
    "retirement_date",
]

#: МРП in tenge by year.
MRP = {
    2008: 1168,
    2009: 1273,
    2010: 1413,
    2011: 1512,
    2012: 1618,
    2013: 1731,
    2014: 1852,
    2015: 1982,
    2016: 2121,
    2017: 2269,
    2018: 2405,
    2019: 2525,
    2020: 2778,
    2021: 2917,
    2022: 3063,
    2023: 3450,
    2024: 3692,
    2025: 3932,
    2026: 4325,
}
# In hundredths of an МРП.
BIRTH_GRANT_MRP = (3800, 3800, 3800, 6300)  # 1st, 2nd, 3rd, 4th and later child
CHILDCARE_MRP = (576, 681, 785, 890)  # monthly, until the child is 1.5
FUNERAL_GRANT_MRP = 5200
_LARGE_FAMILY_MRP = 1603  # monthly, four children under 18
_LARGE_FAMILY_EXTRA_MRP = 401  # for each further child


def mrp(year: int) -> int:
    """The МРП of a year (the nearest known year outside the table)."""
    return MRP[min(max(year, min(MRP)), max(MRP))]


def _order(child_number: int) -> int:
    return min(max(child_number, 1), 4) - 1


def birth_grant_tiyn(year: int, child_number: int) -> int:
    return mrp(year) * BIRTH_GRANT_MRP[_order(child_number)]


def childcare_tiyn(year: int, child_number: int) -> int:
    return mrp(year) * CHILDCARE_MRP[_order(child_number)]


def large_family_tiyn(year: int, children: int) -> int:
    return mrp(year) * (_LARGE_FAMILY_MRP + _LARGE_FAMILY_EXTRA_MRP * max(0, children - 4))


def funeral_grant_tiyn(year: int) -> int:
    return mrp(year) * FUNERAL_GRANT_MRP


def anniversary(day: dt.date, years: int, months: int = 0) -> dt.date:
    """The date `years` and `months` after `day` (the last day of a shorter month)."""
    total = day.month - 1 + months
    year, month = day.year + years + total // 12, total % 12 + 1
    for last in (day.day, 30, 29, 28):
        try:
            return dt.date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError("unreachable: every month has a 28th")


def childcare_end(child_born: dt.date) -> dt.date:
    """The childcare allowance is paid until the child is one and a half."""
    return anniversary(child_born, 1, 6)


def retirement_age_halves(sex: Sex, year: int) -> int:
    """The retirement age in a year, in half-years."""
    if sex is Sex.MALE:
        return 126 if year >= 2001 else 120
    if year <= 2017:
        return 116 if year >= 2001 else 110
    return min(122, 116 + (year - 2017))  # 58.5 in 2018 … 61 from 2023


@functools.lru_cache(maxsize=65536)
def retirement_date(born: dt.date, sex: Sex) -> dt.date:
    """The day a person born on `born` reached (or will reach) the retirement age."""
    if sex is Sex.MALE:
        at60 = anniversary(born, 60)
        return at60 if at60.year < 2001 else anniversary(born, 63)
    at55 = anniversary(born, 55)
    if at55.year < 2001:
        return at55
    for halves in range(116, 123):  # 58 … 61: the age rose while these women aged
        day = anniversary(born, halves // 2, 6 * (halves % 2))
        if retirement_age_halves(sex, day.year) <= halves:
            return day
    raise AssertionError("unreachable: 61 is the age from 2023 on")
