"""The composite services a ЦОН gives today, built on the published agency contracts.

- `newborn-registration` — ГБД ФЛ assigns the child's IIN, ЗАГС registers the birth,
  the migration police registers the child at the mother's address, education puts
  the child in the kindergarten queue of her city. The mother's consent (OTP or in
  person) covers her own data; once the child has an IIN the operator confirms, in
  person, a consent for the child (the parent is at the counter with the medical
  birth certificate), which covers the steps about the child.
- `personal-data` — справка о персональных данных: ГБД ФЛ + migration + address.
- `address-certificate` — адресная справка: registration, its history, the address.
- `marital-status` — справка о семейном положении: ГБД ФЛ + ЗАГС (no migration, so it
  keeps working while the migration registry is down).
- `no-criminal-record` — справка об отсутствии судимости from КПСиСУ; offered once the
  `criminal` adapter is published.

Add one: write its steps (each a small async function using `StepContext`), then
`CATALOGUE.register(CompositeService(...))`. See docs/adr/0007-service-centre.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from govbus.errors import AlreadyExists, NotFound, Origin
from govbus.pb.agencies.address.v1 import address_pb2, address_pb2_grpc
from govbus.pb.agencies.criminal.v1 import criminal_pb2, criminal_pb2_grpc
from govbus.pb.agencies.education.v1 import education_pb2, education_pb2_grpc
from govbus.pb.agencies.gbdfl.v1 import gbdfl_pb2, gbdfl_pb2_grpc
from govbus.pb.agencies.migration.v1 import migration_pb2, migration_pb2_grpc
from govbus.pb.agencies.zags.v1 import zags_pb2, zags_pb2_grpc
from service_centre.composites import (
    APPLICANT,
    CHILD,
    CONSENT_AGENCY,
    Catalogue,
    CertificateLine,
    CompositeService,
    InputField,
    Step,
    StepContext,
)

__all__ = ["CATALOGUE", "as_dict"]

Results = Mapping[str, Mapping[str, Any]]


def as_dict(message: Message) -> dict[str, Any]:
    """A response as the JSON-able dict the visit keeps (proto field names, enums by name)."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


# --- reads every service shares ---------------------------------------------------------------


async def _person(ctx: StepContext) -> dict[str, Any]:
    person = await ctx.call(
        "gbdfl",
        gbdfl_pb2_grpc.PersonRegistryStub,
        "GetPerson",
        gbdfl_pb2.GetPersonRequest(iin=ctx.applicant),
        subject=APPLICANT,
    )
    return as_dict(person)


async def _registration(ctx: StepContext) -> dict[str, Any]:
    registration = await ctx.call(
        "migration",
        migration_pb2_grpc.ResidenceRegistryStub,
        "GetRegistration",
        migration_pb2.GetRegistrationRequest(iin=ctx.applicant),
        subject=APPLICANT,
    )
    return as_dict(registration)


async def _history(ctx: StepContext) -> dict[str, Any]:
    rows = await ctx.stream(
        "migration",
        migration_pb2_grpc.ResidenceRegistryStub,
        "ListRegistrationHistory",
        migration_pb2.ListRegistrationHistoryRequest(iin=ctx.applicant),
        subject=APPLICANT,
    )
    return {"registrations": [as_dict(r) for r in rows]}


async def _address(ctx: StepContext) -> dict[str, Any]:
    rca = str(ctx.results["registration"]["rca"])
    found = await ctx.call(
        "address",
        address_pb2_grpc.AddressRegisterStub,
        "GetAddress",
        address_pb2.GetAddressRequest(rca=rca),
        subject="",
    )
    return as_dict(found)


# The reads several services start from.
_PERSON_STEP = Step("person", "Сведения о физическом лице (ГБД ФЛ)", "gbdfl", _person)
_REGISTRATION_STEP = Step(
    "registration", "Регистрация по месту жительства", "migration", _registration
)
_ADDRESS_STEP = Step(
    "address", "Адрес (адресный регистр)", "address", _address, needs=("registration",), subject=""
)


async def _marriages(ctx: StepContext) -> dict[str, Any]:
    rows = await ctx.stream(
        "zags",
        zags_pb2_grpc.CivilRegistryStub,
        "ListMarriages",
        zags_pb2.ListMarriagesRequest(iin=ctx.applicant),
        subject=APPLICANT,
    )
    return {"marriages": [as_dict(r) for r in rows]}


def _value(results: Results, step: str, key: str) -> tuple[str, str]:
    """(value, "") when the step is done, ("", step) when its result is missing."""
    if step not in results:
        return "", step
    return str(results[step].get(key, "")), ""


def _line(results: Results, label: str, step: str, key: str) -> CertificateLine:
    value, missing = _value(results, step, key)
    return CertificateLine(label, value, missing)


def _name_lines(results: Results) -> list[CertificateLine]:
    person = results.get("person")
    if person is None:
        return [
            CertificateLine("ФИО", "", "person"),
            CertificateLine("Дата рождения", "", "person"),
        ]
    name = " ".join(str(person[k]) for k in ("last_name", "first_name", "patronymic") if person[k])
    return [
        CertificateLine("ИИН", str(person["iin"])),
        CertificateLine("ФИО", name),
        CertificateLine("Дата рождения", str(person["birth_date"])),
    ]


# --- справка о персональных данных ---------------------------------------------------------------


def _personal_data_certificate(results: Results) -> list[CertificateLine]:
    lines = _name_lines(results)
    lines += [
        _line(results, "Место рождения", "person", "birth_place"),
        _line(results, "Национальность", "person", "nationality"),
        _line(results, "Гражданство", "person", "citizenship"),
    ]
    person = results.get("person")
    if person is not None and person.get("document"):
        document = person["document"]
        lines.append(
            CertificateLine(
                "Удостоверение личности",
                f"№ {document.get('number', '')}, до {document.get('expiry_date', '')}",
            )
        )
    lines.append(_line(results, "Адрес постоянной регистрации", "address", "line"))
    lines.append(_line(results, "Зарегистрирован с", "registration", "since_date"))
    return lines


PERSONAL_DATA = CompositeService(
    code="personal-data",
    title="Справка о персональных данных",
    description="ГБД ФЛ, регистрация по месту жительства и адресный регистр — одной справкой.",
    purpose="personal-data-certificate",
    purpose_text="выдача справки о ваших персональных данных в ЦОН",
    steps=(
        _PERSON_STEP,
        _REGISTRATION_STEP,
        _ADDRESS_STEP,
    ),
    certificate_title="СПРАВКА о персональных данных",
    certificate=_personal_data_certificate,
    order=10,
)


# --- адресная справка -----------------------------------------------------------------------------


def _address_certificate(results: Results) -> list[CertificateLine]:
    lines = _name_lines(results)
    lines.append(_line(results, "Адрес постоянной регистрации", "address", "line"))
    lines.append(_line(results, "Код адреса (РКА)", "address", "rca"))
    lines.append(_line(results, "Зарегистрирован с", "registration", "since_date"))
    history = results.get("history")
    if history is None:
        lines.append(CertificateLine("Прежние адреса", "", "history"))
    else:
        earlier = [r for r in history["registrations"] if not r.get("current")]
        text = "; ".join(
            f"{r['address_line']} ({r['since_date']} — {r['until_date']})" for r in earlier
        )
        lines.append(CertificateLine("Прежние адреса", text or "нет"))
    return lines


ADDRESS_CERTIFICATE = CompositeService(
    code="address-certificate",
    title="Адресная справка",
    description="Постоянная регистрация, её история и адрес из адресного регистра.",
    purpose="address-certificate",
    purpose_text="выдача адресной справки в ЦОН",
    steps=(
        _PERSON_STEP,
        _REGISTRATION_STEP,
        Step("history", "История регистрации", "migration", _history),
        _ADDRESS_STEP,
    ),
    certificate_title="АДРЕСНАЯ СПРАВКА",
    certificate=_address_certificate,
    order=20,
)


# --- справка о семейном положении ----------------------------------------------------------------


_MARITAL = {
    "MARITAL_STATUS_SINGLE": "не состоит в браке",
    "MARITAL_STATUS_MARRIED": "состоит в браке",
    "MARITAL_STATUS_DIVORCED": "разведён(а)",
    "MARITAL_STATUS_WIDOWED": "вдовец / вдова",
}


def _marital_certificate(results: Results) -> list[CertificateLine]:
    lines = _name_lines(results)
    status, missing = _value(results, "person", "marital_status")
    lines.append(CertificateLine("Семейное положение", _MARITAL.get(status, status), missing))
    marriages = results.get("marriages")
    if marriages is None:
        lines.append(CertificateLine("Актовые записи о браке", "", "marriages"))
    else:
        text = "; ".join(
            f"№ {m['record_id']} от {m['marriage_date']}"
            + (f", расторгнут {m['dissolved_date']}" if m.get("dissolved_date") else "")
            for m in marriages["marriages"]
        )
        lines.append(CertificateLine("Актовые записи о браке", text or "нет"))
    return lines


MARITAL_STATUS = CompositeService(
    code="marital-status",
    title="Справка о семейном положении",
    description="Семейное положение по ГБД ФЛ и актовые записи ЗАГС о браке.",
    purpose="marital-status-certificate",
    purpose_text="выдача справки о семейном положении в ЦОН",
    steps=(
        _PERSON_STEP,
        Step("marriages", "Актовые записи о браке (ЗАГС)", "zags", _marriages),
    ),
    certificate_title="СПРАВКА о семейном положении",
    certificate=_marital_certificate,
    order=30,
)


# --- регистрация рождения ------------------------------------------------------------------------


_SEX_GBDFL = {"male": gbdfl_pb2.SEX_MALE, "female": gbdfl_pb2.SEX_FEMALE}
_SEX_ZAGS = {"male": zags_pb2.SEX_MALE, "female": zags_pb2.SEX_FEMALE}
_OFFICE = "ЦОН — отдел регистрации актов гражданского состояния"


def _three_days_ago() -> str:
    return (dt.date.today() - dt.timedelta(days=3)).isoformat()


async def _mother_registration(ctx: StepContext) -> dict[str, Any]:
    return await _registration(ctx)


async def _assign_iin(ctx: StepContext) -> dict[str, Any]:
    i = ctx.inputs
    # The visit id is the application id: a retried AssignIin returns the same child.
    person = await ctx.call(
        "gbdfl",
        gbdfl_pb2_grpc.PersonRegistryStub,
        "AssignIin",
        gbdfl_pb2.AssignIinRequest(
            last_name=i["last_name"],
            first_name=i["first_name"],
            patronymic=i.get("patronymic", ""),
            birth_date=i["birth_date"],
            sex=_SEX_GBDFL[i["sex"]],
            birth_place=i["birth_place"],
            mother_iin=ctx.applicant,
            father_iin=i.get("father_iin", ""),
            application_id=ctx.visit_id,
        ),
        subject=APPLICANT,
    )
    return as_dict(person)


def _child(ctx: StepContext) -> str:
    return str(ctx.results["assign-iin"]["iin"])


async def _child_consent(ctx: StepContext) -> dict[str, Any]:
    return dict(
        await ctx.consent_in_person(
            CHILD, _child(ctx), "birth-medical-certificate", ctx.inputs["birth_certificate"]
        )
    )


async def _register_birth(ctx: StepContext) -> dict[str, Any]:
    i, child = ctx.inputs, _child(ctx)
    stub = zags_pb2_grpc.CivilRegistryStub
    try:
        record = await ctx.call(
            "zags",
            stub,
            "RegisterBirth",
            zags_pb2.RegisterBirthRequest(
                child_iin=child,
                last_name=i["last_name"],
                first_name=i["first_name"],
                patronymic=i.get("patronymic", ""),
                birth_date=i["birth_date"],
                sex=_SEX_ZAGS[i["sex"]],
                birth_place=i["birth_place"],
                mother_iin=ctx.applicant,
                father_iin=i.get("father_iin", ""),
                registry_office=_OFFICE,
            ),
            subject=CHILD,
        )
    except AlreadyExists:
        # An earlier attempt got through although its answer did not: read it back.
        record = await ctx.call(
            "zags", stub, "GetBirthRecord", zags_pb2.GetBirthRecordRequest(iin=child), subject=CHILD
        )
    return as_dict(record)


async def _home_address(ctx: StepContext) -> dict[str, Any]:
    rca = str(ctx.results["mother-registration"]["rca"])
    found = await ctx.call(
        "address",
        address_pb2_grpc.AddressRegisterStub,
        "GetAddress",
        address_pb2.GetAddressRequest(rca=rca),
        subject="",
    )
    return as_dict(found)


async def _register_residence(ctx: StepContext) -> dict[str, Any]:
    child = _child(ctx)
    stub = migration_pb2_grpc.ResidenceRegistryStub
    try:
        registration = await ctx.call(
            "migration",
            stub,
            "RegisterAtAddress",
            migration_pb2.RegisterAtAddressRequest(
                iin=child,
                rca=str(ctx.results["mother-registration"]["rca"]),
                kind=migration_pb2.REGISTRATION_KIND_PERMANENT,
                since_date=ctx.inputs["birth_date"],
            ),
            subject=CHILD,
        )
    except AlreadyExists:
        registration = await ctx.call(
            "migration",
            stub,
            "GetRegistration",
            migration_pb2.GetRegistrationRequest(iin=child),
            subject=CHILD,
        )
    return as_dict(registration)


async def _kindergarten_queue(ctx: StepContext) -> dict[str, Any]:
    child = _child(ctx)
    stub = education_pb2_grpc.EducationRegistryStub
    city = str(ctx.results["home-address"]["city"])
    gardens = await ctx.stream(
        "education",
        stub,
        "ListKindergartens",
        education_pb2.ListKindergartensRequest(city=city),
        subject=CHILD,
    )
    if not gardens:
        raise NotFound(f"no kindergarten in {city}", origin=Origin.PROVIDER)
    try:
        entry = await ctx.call(
            "education",
            stub,
            "EnqueueKindergarten",
            education_pb2.EnqueueKindergartenRequest(
                child_iin=child,
                applicant_iin=ctx.applicant,
                kindergarten_id=gardens[0].id,
                priority=education_pb2.PRIORITY_CATEGORY_NONE,
            ),
            subject=CHILD,
        )
    except AlreadyExists:
        entry = await ctx.call(
            "education",
            stub,
            "GetQueueEntry",
            education_pb2.GetQueueEntryRequest(child_iin=child),
            subject=CHILD,
        )
    result = as_dict(entry)
    result["kindergarten_name"] = next(
        (g.name for g in gardens if g.id == entry.kindergarten_id), entry.kindergarten_id
    )
    return result


def _newborn_certificate(results: Results) -> list[CertificateLine]:
    lines: list[CertificateLine] = []
    child = results.get("assign-iin")
    if child is None:
        lines.append(CertificateLine("ИИН ребёнка", "", "assign-iin"))
    else:
        name = " ".join(
            str(child[k]) for k in ("last_name", "first_name", "patronymic") if child[k]
        )
        lines += [CertificateLine("ИИН ребёнка", str(child["iin"])), CertificateLine("ФИО", name)]
        lines.append(CertificateLine("Дата рождения", str(child["birth_date"])))
    lines.append(_line(results, "Актовая запись о рождении", "register-birth", "record_id"))
    lines.append(_line(results, "Зарегистрирован по адресу", "register-residence", "address_line"))
    queue = results.get("kindergarten-queue")
    if queue is None:
        lines.append(CertificateLine("Очередь в детский сад", "", "kindergarten-queue"))
    else:
        lines.append(
            CertificateLine(
                "Очередь в детский сад",
                f"{queue['kindergarten_name']}, место в очереди {queue['position']}",
            )
        )
    return lines


NEWBORN = CompositeService(
    code="newborn-registration",
    title="Регистрация рождения ребёнка",
    description=(
        "ИИН (ГБД ФЛ), актовая запись о рождении (ЗАГС), регистрация по адресу матери "
        "(миграционная полиция), очередь в детский сад (образование) — за один визит."
    ),
    purpose="birth-registration",
    purpose_text="регистрация рождения ребёнка и связанные услуги в ЦОН",
    inputs=(
        InputField("last_name", "Фамилия ребёнка"),
        InputField("first_name", "Имя ребёнка"),
        InputField("patronymic", "Отчество ребёнка", required=False),
        InputField("birth_date", "Дата рождения", kind="past-date", default=_three_days_ago),
        InputField(
            "sex", "Пол", kind="choice", choices=(("female", "девочка"), ("male", "мальчик"))
        ),
        InputField("birth_place", "Место рождения", default="г. Алматы"),
        InputField("father_iin", "ИИН отца", kind="iin", required=False),
        InputField(
            "birth_certificate",
            "№ медицинского свидетельства о рождении (латиница и цифры)",
            kind="document",
        ),
    ),
    steps=(
        Step("mother-registration", "Регистрация матери", "migration", _mother_registration),
        Step("assign-iin", "ИИН ребёнка (ГБД ФЛ)", "gbdfl", _assign_iin, write=True),
        Step(
            "child-consent",
            "Согласие за ребёнка (лично, оператор ЦОН)",
            CONSENT_AGENCY,
            _child_consent,
            needs=("assign-iin",),
            subject="",
        ),
        Step(
            "register-birth",
            "Актовая запись о рождении (ЗАГС)",
            "zags",
            _register_birth,
            needs=("assign-iin", "child-consent"),
            subject=CHILD,
            write=True,
        ),
        Step(
            "home-address",
            "Адрес матери (адресный регистр)",
            "address",
            _home_address,
            needs=("mother-registration",),
            subject="",
        ),
        Step(
            "register-residence",
            "Регистрация ребёнка по адресу матери",
            "migration",
            _register_residence,
            needs=("assign-iin", "mother-registration", "child-consent"),
            subject=CHILD,
            write=True,
        ),
        Step(
            "kindergarten-queue",
            "Очередь в детский сад",
            "education",
            _kindergarten_queue,
            needs=("assign-iin", "home-address", "child-consent"),
            subject=CHILD,
            write=True,
            deadline_s=4.0,
        ),
    ),
    certificate_title="СВИДЕТЕЛЬСТВО о регистрации рождения (сводка услуг)",
    certificate=_newborn_certificate,
    child_document_input="birth_certificate",
    order=1,
)


# --- справка об отсутствии судимости -------------------------------------------------------------


async def _criminal_certificate(ctx: StepContext) -> dict[str, Any]:
    certificate = await ctx.call(
        "criminal",
        criminal_pb2_grpc.CriminalRecordsStub,
        "IssueCertificate",
        criminal_pb2.IssueCertificateRequest(iin=ctx.applicant, purpose=ctx.inputs["purpose"]),
        subject=APPLICANT,
    )
    return as_dict(certificate)


def _no_record_certificate(results: Results) -> list[CertificateLine]:
    lines = _name_lines(results)
    found = results.get("certificate")
    if found is None:
        return [*lines, CertificateLine("Сведения о судимости", "", "certificate")]
    verdict = "имеет непогашенную судимость" if found["has_convictions"] else "не имеет судимости"
    return [
        *lines,
        CertificateLine("Номер справки", str(found["certificate_number"])),
        CertificateLine("Сведения о судимости", verdict),
        CertificateLine("Дата выдачи", str(found["issued_date"])),
    ]


NO_CRIMINAL_RECORD = CompositeService(
    code="no-criminal-record",
    title="Справка об отсутствии судимости",
    description="Электронная справка КПСиСУ; выдаётся, когда реестр судимостей подключён.",
    purpose="criminal-record-certificate",
    purpose_text="выдача справки о наличии либо отсутствии судимости",
    inputs=(
        InputField(
            "purpose",
            "Цель справки",
            kind="choice",
            choices=(("employment", "трудоустройство"), ("visa", "виза"), ("other", "иное")),
            default="employment",
        ),
    ),
    steps=(
        _PERSON_STEP,
        Step("certificate", "Справка КПСиСУ", "criminal", _criminal_certificate, write=True),
    ),
    certificate_title="СПРАВКА о наличии либо отсутствии судимости",
    certificate=_no_record_certificate,
    order=40,
)


#: Every composite service this application knows; offered when their agencies are published.
CATALOGUE = Catalogue().extend(
    [NEWBORN, PERSONAL_DATA, ADDRESS_CERTIFICATE, MARITAL_STATUS, NO_CRIMINAL_RECORD]
)
