"""Identifiers of the bus, parsed, validated and printed in one place.

- IIN (individual identification number) and BIN (business identification
  number): 12 digits with the national check digit — weights 1..11, sum mod 11;
  if that gives 10, weights 3..11,1,2; if that gives 10 again, the number is
  invalid (never issued).
- IIN digits 1–6 are the date of birth (YYMMDD), digit 7 the century and sex
  (1/2: 1800s, 3/4: 1900s, 5/6: 2000s; odd = male).
- BIN digits 1–4 are the registration year and month, digit 5 the kind of
  entity (4 resident legal entity, 5 non-resident, 6 individual entrepreneur),
  digit 6 the division (0 head office, 1 branch, 2 representative office,
  4 peasant farm).
- Member `KZ/GOV/<BIN>`, subsystem `KZ/GOV/<BIN>/<code>`, security server
  `KZ/GOV/<BIN>/<code>`, service `KZ/GOV/<BIN>/<subsystem>/<service>/<version>`.

Everything else in govbus takes these typed values; nothing else parses ids.
Every failure raises `InvalidIdentifier`, never another exception.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass

from govbus.errors import InvalidIdentifier

__all__ = [
    "Bin",
    "EntityKind",
    "Iin",
    "MemberClass",
    "MemberId",
    "ServerId",
    "ServiceId",
    "Sex",
    "SubsystemId",
    "check_digit",
]

_W1 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
_W2 = (3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2)
_CODE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_VERSION = re.compile(r"v[1-9][0-9]{0,3}")
_INSTANCE = re.compile(r"[A-Z]{2}")


def check_digit(first11: str) -> int | None:
    """The national check digit of 11 digits, or None if the number cannot be issued."""
    digits = [ord(c) - 48 for c in first11]
    total = sum(d * w for d, w in zip(digits, _W1, strict=True)) % 11
    if total == 10:
        total = sum(d * w for d, w in zip(digits, _W2, strict=True)) % 11
        if total == 10:
            return None
    return total


def _twelve_digits(kind: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidIdentifier(f"{kind} must be a string of 12 digits, got {type(value).__name__}")
    if len(value) != 12 or not value.isascii() or not value.isdigit():
        shown = value if len(value) <= 20 else value[:20] + "…"
        raise InvalidIdentifier(f"{kind} must be exactly 12 digits, got {shown!r}")
    expected = check_digit(value[:11])
    if expected is None:
        raise InvalidIdentifier(f"{kind} {value} cannot exist: its check digit is undefined")
    if expected != ord(value[11]) - 48:
        raise InvalidIdentifier(f"{kind} {value} has a wrong check digit (expected {expected})")
    return value


class Sex(enum.Enum):
    MALE = "M"
    FEMALE = "F"


_CENTURY = {1: 1800, 2: 1800, 3: 1900, 4: 1900, 5: 2000, 6: 2000}


@dataclass(frozen=True, slots=True)
class Iin:
    """A validated individual identification number."""

    value: str

    def __post_init__(self) -> None:
        _twelve_digits("IIN", self.value)
        century = _CENTURY.get(ord(self.value[6]) - 48)
        if century is None:
            raise InvalidIdentifier(
                f"IIN {self.value}: digit 7 must give century and sex (1-6), got {self.value[6]}"
            )
        try:
            dt.date(century + int(self.value[0:2]), int(self.value[2:4]), int(self.value[4:6]))
        except ValueError:
            raise InvalidIdentifier(
                f"IIN {self.value}: digits 1-6 are not a valid date of birth"
            ) from None

    @classmethod
    def parse(cls, text: str) -> Iin:
        return cls(text.strip() if isinstance(text, str) else text)

    @classmethod
    def is_valid(cls, text: str) -> bool:
        try:
            cls(text)
        except InvalidIdentifier:
            return False
        return True

    @classmethod
    def build(cls, birth_date: dt.date, sex: Sex, serial: int) -> Iin | None:
        """The IIN for a birth date, sex and 4-digit serial, or None if that serial cannot
        carry a check digit (the caller takes the next serial)."""
        if not 1800 <= birth_date.year <= 2099 or not 0 <= serial <= 9999:
            raise InvalidIdentifier("IIN birth year must be 1800-2099 and serial 0-9999")
        base = {1800: 1, 1900: 3, 2000: 5}[birth_date.year // 100 * 100]
        digit7 = base + (sex is Sex.FEMALE)
        first11 = f"{birth_date:%y%m%d}{digit7}{serial:04d}"
        check = check_digit(first11)
        return None if check is None else cls(f"{first11}{check}")

    @property
    def birth_date(self) -> dt.date:
        century = _CENTURY[ord(self.value[6]) - 48]
        v = self.value
        return dt.date(century + int(v[0:2]), int(v[2:4]), int(v[4:6]))

    @property
    def sex(self) -> Sex:
        return Sex.MALE if (ord(self.value[6]) - 48) % 2 else Sex.FEMALE

    def masked(self) -> str:
        """For logs and screens: date part and check digit hidden."""
        return f"******{self.value[6:8]}***{self.value[11]}"

    def __str__(self) -> str:
        return self.value


class EntityKind(enum.Enum):
    RESIDENT = 4
    NON_RESIDENT = 5
    ENTREPRENEUR = 6


@dataclass(frozen=True, slots=True)
class Bin:
    """A validated business identification number."""

    value: str

    def __post_init__(self) -> None:
        _twelve_digits("BIN", self.value)
        month = int(self.value[2:4])
        if not 1 <= month <= 12:
            raise InvalidIdentifier(
                f"BIN {self.value}: digits 3-4 must be a month, got {month:02d}"
            )
        if self.value[4] not in "456":
            raise InvalidIdentifier(
                f"BIN {self.value}: digit 5 must be the entity kind 4, 5 or 6, got {self.value[4]}"
            )
        if self.value[5] not in "0124":
            raise InvalidIdentifier(
                f"BIN {self.value}: digit 6 must be the division 0, 1, 2 or 4, got {self.value[5]}"
            )

    @classmethod
    def parse(cls, text: str) -> Bin:
        return cls(text.strip() if isinstance(text, str) else text)

    @classmethod
    def build(
        cls, year: int, month: int, serial: int, kind: EntityKind = EntityKind.RESIDENT
    ) -> Bin | None:
        """The BIN for a registration month and 5-digit serial (None: take the next serial)."""
        if not 0 <= serial <= 99999:
            raise InvalidIdentifier("BIN serial must be 0-99999")
        first11 = f"{year % 100:02d}{month:02d}{kind.value}0{serial:05d}"
        check = check_digit(first11)
        return None if check is None else cls(f"{first11}{check}")

    def __str__(self) -> str:
        return self.value


class MemberClass(enum.Enum):
    GOV = "GOV"
    COM = "COM"
    NGO = "NGO"


def _split(kind: str, text: object, parts: int) -> list[str]:
    if not isinstance(text, str):
        raise InvalidIdentifier(f"{kind} id must be a string")
    if len(text) > 300:
        raise InvalidIdentifier(f"{kind} id is too long ({len(text)} characters)")
    fields = text.split("/")
    if len(fields) != parts:
        shape = {
            3: "KZ/<class>/<BIN>",
            4: "KZ/<class>/<BIN>/<code>",
            6: "KZ/<class>/<BIN>/<subsystem>/<service>/<version>",
        }[parts]
        raise InvalidIdentifier(f"{kind} id {text!r} must look like {shape}")
    return fields


def _code(kind: str, text: str) -> str:
    if not _CODE.fullmatch(text):
        raise InvalidIdentifier(
            f"{kind} code {text!r} must be 1-63 lower-case letters, digits or '-'"
        )
    return text


@dataclass(frozen=True, slots=True)
class MemberId:
    member_class: MemberClass
    code: Bin
    instance: str = "KZ"

    @classmethod
    def parse(cls, text: str) -> MemberId:
        instance, klass, code = _split("member", text, 3)
        return cls._from_parts(instance, klass, code)

    @classmethod
    def _from_parts(cls, instance: str, klass: str, code: str) -> MemberId:
        if not _INSTANCE.fullmatch(instance):
            raise InvalidIdentifier(f"instance {instance!r} must be two capital letters, e.g. KZ")
        try:
            member_class = MemberClass(klass)
        except ValueError:
            raise InvalidIdentifier(f"member class {klass!r} must be GOV, COM or NGO") from None
        return cls(member_class, Bin(code), instance)

    def __str__(self) -> str:
        return f"{self.instance}/{self.member_class.value}/{self.code}"


@dataclass(frozen=True, slots=True)
class SubsystemId:
    member: MemberId
    code: str

    def __post_init__(self) -> None:
        _code("subsystem", self.code)

    @classmethod
    def parse(cls, text: str) -> SubsystemId:
        instance, klass, code, sub = _split("subsystem", text, 4)
        return cls(MemberId._from_parts(instance, klass, code), sub)

    def __str__(self) -> str:
        return f"{self.member}/{self.code}"


@dataclass(frozen=True, slots=True)
class ServerId:
    """A security server, named under the member that owns it."""

    member: MemberId
    code: str

    def __post_init__(self) -> None:
        _code("security server", self.code)

    @classmethod
    def parse(cls, text: str) -> ServerId:
        instance, klass, code, server = _split("security server", text, 4)
        return cls(MemberId._from_parts(instance, klass, code), server)

    def __str__(self) -> str:
        return f"{self.member}/{self.code}"


@dataclass(frozen=True, slots=True)
class ServiceId:
    subsystem: SubsystemId
    code: str
    version: str

    def __post_init__(self) -> None:
        _code("service", self.code)
        if not _VERSION.fullmatch(self.version):
            raise InvalidIdentifier(f"service version {self.version!r} must look like v1, v2, …")

    @classmethod
    def parse(cls, text: str) -> ServiceId:
        instance, klass, code, sub, service, version = _split("service", text, 6)
        return cls(SubsystemId(MemberId._from_parts(instance, klass, code), sub), service, version)

    @property
    def member(self) -> MemberId:
        return self.subsystem.member

    def __str__(self) -> str:
        return f"{self.subsystem}/{self.code}/{self.version}"
