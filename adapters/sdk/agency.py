"""What an agency adapter is, what it publishes, and how the CLI finds it.

An adapter is a folder `adapters/<code>/` whose `__init__.py` defines
`ADAPTER = AgencyAdapter(...)`: its generated proto module, the function that adds
its servicer to a server, how to open its store and build its servicer, how to fill
its store from the synthetic world, and the contract samples. Next to it,
`publish.json` says how the registry should publish it (`Publication`).

`load(code)` imports `adapters.<code>`; `discover()` finds every such folder, so a new
adapter needs no edit anywhere else. `AGENCIES` lists the twenty agency contracts of
`proto/agencies/` with the member each one belongs to.

This module must never start a server or touch a store.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from adapters.sdk.descriptors import descriptor_set_bytes, service_descriptor
from govbus.errors import ConfigInvalid, InvalidRequest, UnknownService
from govbus.ids import MemberId, ServiceId, SubsystemId

if TYPE_CHECKING:
    from adapters.population import World
    from adapters.sdk.contract import ContractSamples

__all__ = [
    "AGENCIES",
    "CONSENT_POLICIES",
    "RESERVED",
    "AgencyAdapter",
    "AgencyInfo",
    "MethodSpec",
    "Publication",
    "adapter_codes",
    "discover",
    "load",
]

_CODE = re.compile(r"[a-z][a-z0-9]{1,30}")
#: Names under adapters/ that are not agencies.
RESERVED = frozenset({"sdk", "population", "cli"})
CONSENT_POLICIES = ("CONSENT_NOT_REQUIRED", "CONSENT_REQUIRED", "CONSENT_OR_LEGAL_BASIS")
_POLICY_WORDS = {
    "CONSENT_NOT_REQUIRED": "not-required",
    "CONSENT_REQUIRED": "required",
    "CONSENT_OR_LEGAL_BASIS": "consent-or-legal-basis",
}


@dataclass(frozen=True)
class AgencyInfo:
    code: str
    member: str  # KZ/GOV/<BIN> of the agency that owns the registry
    title: str
    grpc_service: str


def _agency(code: str, bin_: str, title: str, service: str) -> AgencyInfo:
    return AgencyInfo(code, f"KZ/GOV/{bin_}", title, f"kz.gov.{code}.v1.{service}")


#: The twenty agency contracts the ЦОН is integrated with (proto/agencies/<code>/v1).
AGENCIES: Mapping[str, AgencyInfo] = {
    a.code: a
    for a in (
        _agency("gbdfl", "010140100000", "ГБД ФЛ — физические лица (ИИН)", "PersonRegistry"),
        _agency("gbdul", "010240100024", "ГБД ЮЛ — юридические лица (БИН)", "LegalEntityRegistry"),
        _agency("zags", "010340100048", "ЗАГС — акты гражданского состояния", "CivilRegistry"),
        _agency("address", "010440100061", "Адресный регистр", "AddressRegister"),
        _agency(
            "migration", "010540100085", "Миграционная полиция — прописка", "ResidenceRegistry"
        ),
        _agency("fines", "010640100108", "Административные штрафы", "AdministrativeFines"),
        _agency("criminal", "010740100121", "КПСиСУ — судимость", "CriminalRecords"),
        _agency("tax", "010840100145", "КГД — налоги", "TaxService"),
        _agency("realestate", "010940100169", "Регистр недвижимости", "RealEstateRegister"),
        _agency("land", "011040100189", "Земельный кадастр", "LandCadastre"),
        _agency("pension", "011140100201", "ЕНПФ — пенсионные взносы", "PensionFund"),
        _agency("benefits", "011240100225", "ГЦВП — пособия", "StateBenefits"),
        _agency("health", "020140100240", "Здравоохранение", "HealthRegistry"),
        _agency("education", "020240100264", "Образование", "EducationRegistry"),
        _agency("vehicles", "020340100288", "Транспортные средства", "VehicleRegistry"),
        _agency("licences", "020440100300", "Водительские удостоверения", "DrivingLicences"),
        _agency(
            "courts", "020540100324", "Суды и исполнительное производство", "EnforcementRegister"
        ),
        _agency("notary", "020640100348", "Нотариат", "NotaryRegistry"),
        _agency("kazpost", "020740100361", "Казпочта", "PostalService"),
        _agency("military", "020840100385", "Воинский учёт", "MilitaryRegistration"),
    )
}


@dataclass(frozen=True)
class MethodSpec:
    """One method as the registry records it (govbus.v1.Method)."""

    name: str  # "/pkg.Service/Method"
    server_streaming: bool
    idempotent: bool
    fields: tuple[str, ...]


@dataclass(frozen=True)
class Publication:
    """`publish.json`: how the registry publishes an adapter's service."""

    code: str
    title: str
    member: str
    subsystem: str
    service_code: str
    version: str
    grpc_service: str
    personal_data: bool
    consent_policy: str
    default_deadline_ms: int
    idempotent: tuple[str, ...]
    access: tuple[str, ...]
    fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "publish.json") -> Publication:
        try:
            publication = cls(
                code=str(data["code"]),
                title=str(data["title"]),
                member=str(data["member"]),
                subsystem=str(data["subsystem"]),
                service_code=str(data["service_code"]),
                version=str(data["version"]),
                grpc_service=str(data["grpc_service"]),
                personal_data=bool(data["personal_data"]),
                consent_policy=str(data["consent_policy"]),
                default_deadline_ms=int(data["default_deadline_ms"]),
                idempotent=tuple(str(m) for m in data.get("idempotent", ())),
                access=tuple(str(a) for a in data.get("access", ())),
                fields={
                    str(k): tuple(str(f) for f in v) for k, v in data.get("fields", {}).items()
                },
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigInvalid(f"{where}: missing or malformed entry: {exc}") from None
        publication.validate(where)
        return publication

    @classmethod
    def load(cls, path: Path) -> Publication:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigInvalid(f"cannot read {path}: {exc}") from None
        return cls.from_json(data, str(path))

    def validate(self, where: str) -> None:
        self.service_id  # noqa: B018 - parses member, subsystem, code and version
        if self.consent_policy not in CONSENT_POLICIES:
            raise ConfigInvalid(
                f"{where}: consent_policy must be one of {', '.join(CONSENT_POLICIES)}"
            )
        if self.personal_data and self.consent_policy == "CONSENT_NOT_REQUIRED":
            raise ConfigInvalid(f"{where}: personal data needs consent or a legal basis")
        if not 1 <= self.default_deadline_ms <= 120_000:
            raise ConfigInvalid(f"{where}: default_deadline_ms must be 1…120000")
        for client in self.access:
            if not client.startswith("group:"):
                SubsystemId.parse(client)

    @property
    def service_id(self) -> ServiceId:
        return ServiceId(
            SubsystemId(MemberId.parse(self.member), self.subsystem),
            self.service_code,
            self.version,
        )

    def methods(self, pb2: ModuleType) -> list[MethodSpec]:
        """Every method of the published service, from the proto itself."""
        service = service_descriptor(pb2, self.grpc_service)
        names = {m.name for m in service.methods}
        unknown = set(self.idempotent) - names
        if unknown:
            raise ConfigInvalid(f"{self.code}: idempotent names unknown methods {sorted(unknown)}")
        return [
            MethodSpec(
                name=f"/{service.full_name}/{method.name}",
                server_streaming=method.server_streaming,
                idempotent=method.name in self.idempotent,
                fields=self.fields.get(method.name)
                or tuple(f.name for f in method.output_type.fields),
            )
            for method in service.methods
        ]

    @property
    def consent_policy_word(self) -> str:
        """The policy as the registry's CLI and `AdminClient.publish_service` spell it."""
        return _POLICY_WORDS[self.consent_policy]

    def publish_argv(self, descriptor_file: Path, server: str) -> list[str]:
        """The `govbus service publish …` command line for this service (the registry's
        connection options come from `$GOVBUS_REGISTRY_ADMIN` and friends). Access rights
        (`access`) are granted separately with `govbus access grant`."""
        argv = [
            "govbus",
            "service",
            "publish",
            str(self.service_id),
            "--descriptor-set",
            str(descriptor_file),
            "--grpc-service",
            self.grpc_service,
            "--server",
            server,
            "--personal-data" if self.personal_data else "--no-personal-data",
            "--consent-policy",
            self.consent_policy_word,
            "--deadline-ms",
            str(self.default_deadline_ms),
        ]
        for method in self.idempotent:
            argv += ["--idempotent", method]
        for method, names in self.fields.items():
            argv += ["--fields", f"{method}={','.join(names)}"]
        if self.title:
            argv += ["--description", self.title]
        return argv


@dataclass(frozen=True)
class AgencyAdapter:
    """Everything the SDK needs to serve, fill, contract-test and publish one adapter."""

    code: str
    pb2: ModuleType
    add_servicer: Callable[[Any, Any], None]
    open_store: Callable[[Path], Any]  # returns a store with close()
    make_servicer: Callable[[Any], object]
    populate: Callable[[Path, World], None]
    samples: Callable[[World], ContractSamples]
    folder: Path

    @property
    def publication(self) -> Publication:
        return Publication.load(self.folder / "publish.json")

    @property
    def grpc_service(self) -> str:
        return self.publication.grpc_service

    def descriptor_set(self) -> bytes:
        return descriptor_set_bytes(self.pb2)


def adapter_codes() -> list[str]:
    """Codes of the adapters present as folders under adapters/ (implemented ones)."""
    import adapters

    return sorted(
        m.name
        for m in pkgutil.iter_modules(adapters.__path__)
        if m.ispkg and m.name not in RESERVED
    )


def load(code: str) -> AgencyAdapter:
    if not isinstance(code, str) or not _CODE.fullmatch(code) or code in RESERVED:
        raise InvalidRequest(f"{code!r} is not an agency code (lower-case letters and digits)")
    try:
        module = importlib.import_module(f"adapters.{code}")
    except ModuleNotFoundError as exc:
        if exc.name != f"adapters.{code}":
            raise
        known = ", ".join(adapter_codes()) or "none"
        raise UnknownService(f"no adapter {code!r} (implemented: {known})") from None
    adapter = getattr(module, "ADAPTER", None)
    if not isinstance(adapter, AgencyAdapter):
        raise ConfigInvalid(f"adapters/{code}/__init__.py must define ADAPTER = AgencyAdapter(...)")
    if adapter.code != code:
        raise ConfigInvalid(f"adapters/{code} declares code {adapter.code!r}")
    return adapter


def discover() -> list[AgencyAdapter]:
    return [load(code) for code in adapter_codes()]
