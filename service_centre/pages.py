"""Server-rendered pages of the service centre: pure functions from values to HTML.

Every value that came from outside (a registry's answer, an operator's input, an
error message) is escaped here; nothing else builds HTML.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from html import escape

from govbus.errors import GovbusError
from service_centre.composites import CompositeService, InputField
from service_centre.situation import Situation
from service_centre.store import Visit

__all__ = ["error_page", "home_page", "new_visit_page", "situation_page", "visit_page"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f4f6f8;color:#1d2733}
header{background:#00546b;color:#fff;padding:.6em 1.2em;display:flex;gap:2em;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}
main{padding:1em 1.5em;max-width:1100px}
table{border-collapse:collapse;width:100%;background:#fff;margin:.5em 0 1.2em}
th,td{border:1px solid #d5dbe1;padding:.35em .6em;text-align:left;vertical-align:top}
th{background:#e9eef2}
.badge{display:inline-block;padding:.1em .6em;border-radius:1em;font-size:.85em;font-weight:600}
.done,.complete,.ok,.CLOSED{background:#d7f3df;color:#14532d}
.queued,.waiting,.partial,.degraded,.HALF_OPEN,.pending,.awaiting-consent{background:#fff1c2;color:#713f12}
.failed,.blocked,.incomplete,.down,.OPEN,.consent-failed{background:#fde0e0;color:#7f1d1d}
.missing{color:#9a3412;font-style:italic}
.card{background:#fff;border:1px solid #d5dbe1;padding:1em 1.2em;margin:.8em 0}
.cert{border:2px solid #00546b}
label{display:block;margin:.4em 0 .1em;font-size:.9em}
input,select{padding:.3em;min-width:18em}
button{margin-top:.8em;padding:.4em 1.2em;background:#00546b;color:#fff;border:0;cursor:pointer}
.error{background:#fde0e0;border:1px solid #f5a3a3;padding:.6em;margin:.6em 0}
small{color:#5b6773}
"""

_STATE_WORDS = {
    "pending": "ожидает",
    "done": "получено",
    "queued": "в очереди",
    "waiting": "ждёт",
    "failed": "отказ",
    "blocked": "невозможно",
    "complete": "оказана полностью",
    "partial": "оказана частично, остальное в очереди",
    "incomplete": "оказана не полностью",
    "awaiting-consent": "ждёт согласия",
    "consent-failed": "согласие не получено",
    "running": "выполняется",
}


def _time(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms else ""


def _badge(state: str) -> str:
    return f'<span class="badge {escape(state)}">{escape(_STATE_WORDS.get(state, state))}</span>'


def _layout(title: str, body: str, *, refresh_s: int | None = None) -> str:
    refresh = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else ""
    return (
        '<!doctype html><html lang="ru"><head><meta charset="utf-8">'
        f"<title>{escape(title)} — ЦОН</title>{refresh}<style>{_STYLE}</style></head><body>"
        '<header><a href="/">ЦОН · оператор</a><a href="/situation">Ситуационный центр</a>'
        '<a href="/api/visits">API</a></header>'
        f"<main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Cells are HTML already (escape them when building the rows)."""
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{header}</tr>{body}</table>"


def home_page(
    offered: Sequence[CompositeService],
    unavailable: Sequence[tuple[CompositeService, Sequence[str]]],
    visits: Sequence[Visit],
    titles: Mapping[str, str],
    queue_depth: int,
) -> str:
    services = _table(
        ["услуга", "реестры", ""],
        (
            [
                f"<b>{escape(c.title)}</b><br><small>{escape(c.description)}</small>",
                escape(", ".join(c.agencies)),
                f'<a href="/visits/new?service={escape(c.code)}">начать визит</a>',
            ]
            for c in offered
        ),
    )
    later = ""
    if unavailable:
        later = (
            "<p><small>Появятся, когда реестры подключат к шине: "
            + escape("; ".join(f"{c.title} (нет: {', '.join(m)})" for c, m in unavailable))
            + "</small></p>"
        )
    recent = _table(
        ["время", "услуга", "ИИН", "оператор", "статус", ""],
        (
            [
                escape(_time(v.created_ms)),
                escape(titles.get(v.service, v.service)),
                escape(v.iin),
                escape(v.operator),
                _badge(v.status),
                f'<a href="/visits/{escape(v.id)}">открыть</a>',
            ]
            for v in visits
        ),
    )
    queue = (
        f"<p>В очереди шагов: <b>{queue_depth}</b> — "
        '<a href="/situation">ситуационный центр</a></p>'
    )
    return _layout(
        "Приём граждан",
        f"<h2>Услуги</h2>{services}{later}{queue}<h2>Последние визиты</h2>{recent}",
    )


def _input(spec: InputField, value: str) -> str:
    name = escape(spec.name)
    required = " required" if spec.required else ""
    if spec.kind == "choice":
        options = "".join(
            f'<option value="{escape(v)}"{" selected" if v == value else ""}>'
            f"{escape(label)}</option>"
            for v, label in spec.choices
        )
        control = f'<select name="{name}"{required}>{options}</select>'
    else:
        kind = "date" if spec.kind in ("date", "past-date") else "text"
        control = f'<input type="{kind}" name="{name}" value="{escape(value)}"{required}>'
    return f"<label>{escape(spec.label)}</label>{control}"


def new_visit_page(
    composite: CompositeService,
    operator: str,
    values: Mapping[str, str] | None = None,
    error: str = "",
) -> str:
    values = values or {}
    fields = "".join(
        _input(spec, values.get(spec.name, spec.default_value())) for spec in composite.inputs
    )
    problem = f'<div class="error">{escape(error)}</div>' if error else ""
    method = values.get("consent_method", "otp")
    body = f"""{problem}<p>{escape(composite.description)}</p>
<form method="post" action="/visits" class="card">
<input type="hidden" name="service" value="{escape(composite.code)}">
<label>ИИН заявителя</label><input name="iin" value="{escape(values.get("iin", ""))}" required
 pattern="[0-9]{{12}}">
<label>Оператор</label><input name="operator" value="{escape(values.get("operator", operator))}">
{fields}
<h3>Согласие на сбор и обработку персональных данных</h3>
<label>Способ</label><select name="consent_method">
<option value="otp"{" selected" if method == "otp" else ""}>код из SMS</option>
<option value="in-person"{" selected" if method == "in-person" else ""}>лично, по документу</option>
</select>
<label>Телефон для кода (если ещё не зарегистрирован), +7…</label>
<input name="phone" value="{escape(values.get("phone", ""))}">
<label>Документ, удостоверяющий личность: номер (для согласия лично)</label>
<input name="document_number" value="{escape(values.get("document_number", ""))}">
<button type="submit">Начать визит</button></form>"""
    return _layout(composite.title, body)


def _result_cell(result: Mapping[str, object] | None) -> str:
    if not result:
        return ""
    text = json.dumps(result, ensure_ascii=False, indent=1)
    return f"<details><summary>данные</summary><pre>{escape(text)}</pre></details>"


def visit_page(visit: Visit, composite: CompositeService | None, error: str = "") -> str:
    problem = f'<div class="error">{escape(error)}</div>' if error else ""
    titles = {s.name: s.title for s in composite.steps} if composite is not None else {}
    head = (
        f'<div class="card">Статус: {_badge(visit.status)} &nbsp; ИИН заявителя '
        f"<b>{escape(visit.iin)}</b> &nbsp; оператор {escape(visit.operator)} &nbsp; "
        f"<small>визит {escape(visit.id)}, {escape(_time(visit.created_ms))}</small>"
        + (f"<br><small>{escape(visit.note)}</small>" if visit.note else "")
        + "</div>"
    )
    consent = ""
    if visit.stage == "awaiting-consent":
        consent = f"""<form method="post" action="/visits/{escape(visit.id)}/consent" class="card">
<b>Код подтверждения согласия</b> ({escape(visit.note)})
<label>Код из SMS</label><input name="code" pattern="[0-9]{{6}}" required autofocus>
<button type="submit">Подтвердить</button></form>"""
    steps = _table(
        ["шаг", "реестр", "состояние", "попыток", "причина", "результат"],
        (
            [
                escape(titles.get(s.name, s.name)),
                escape(s.agency),
                _badge(s.state),
                str(s.attempts),
                escape(f"{s.error_code} {s.error}".strip()),
                _result_cell(s.result),
            ]
            for s in visit.steps
        ),
    )
    held = ""
    if visit.consents:
        held = _table(
            ["согласие", "за кого", "как", "действует до"],
            (
                [
                    escape(c.consent_id),
                    escape(c.role),
                    escape(c.method),
                    escape(_time(c.expires_ms)),
                ]
                for c in visit.consents
            ),
        )
    certificate = ""
    if composite is not None and composite.certificate is not None and visit.stage == "running":
        lines = composite.certificate(visit.results())

        def cell(label: str, value: str, missing: str) -> str:
            if missing:
                step = escape(titles.get(missing, missing))
                value = f'<span class="missing">нет данных: {step} — в очереди</span>'
            else:
                value = escape(value)
            return f"<tr><th>{escape(label)}</th><td>{value}</td></tr>"

        rows = "".join(cell(line.label, line.value, line.missing) for line in lines)
        certificate = (
            f'<div class="card cert"><h3>{escape(composite.certificate_title)}</h3>'
            f"<table>{rows}</table></div>"
        )
    refresh = 2 if visit.status == "partial" else None
    title = composite.title if composite is not None else visit.service
    body = f"{problem}{head}{consent}{certificate}<h2>Шаги</h2>{steps}{held}"
    return _layout(title, body, refresh_s=refresh)


def situation_page(situation: Situation) -> str:
    warn = f'<div class="error">{escape(situation.error)}</div>' if situation.error else ""
    summary = (
        f'<div class="card">Сервер безопасности ЦОН <b>{escape(situation.server_id)}</b>: '
        f"глобальная конфигурация v{situation.conf_version} "
        f"(истекает через {situation.conf_expires_in_s:.0f} с), обменов {situation.exchanges} "
        f"(отказов {situation.refusals}), журнал {situation.log_size} записей"
        + (
            f'<br><span class="missing">{escape(situation.conf_error)}</span>'
            if situation.conf_error
            else ""
        )
        + f"<br>Очередь ЦОН: <b>{situation.queue_depth}</b> шагов "
        f"({situation.queue_waiting} ждут других), визитов с недостающим: "
        f"{situation.partial_visits}, старейший в очереди {situation.oldest_queued_s:.0f} с"
        '<form method="post" action="/queue/retry" style="display:inline;margin-left:1em">'
        "<button>Повторить очередь сейчас</button></form></div>"
    )
    rows = _table(
        [
            "реестр",
            "состояние",
            "breaker",
            "ошибок %",
            "медленных %",
            "в работе",
            "ждут",
            "сброшено",
            "вызовов",
            "в очереди ЦОН",
            "ждут другие реестры",
            "последний сбой",
        ],
        (
            [
                f"<b>{escape(r.agency)}</b><br><small>{escape(r.service)}</small>",
                _badge(r.health),
                f'<span class="badge {escape(r.breaker)}">{escape(r.breaker)}</span>',
                f"{r.failure_rate * 100:.0f}",
                f"{r.slow_call_rate * 100:.0f}",
                str(r.in_flight),
                str(r.waiting),
                str(r.shed),
                str(r.calls),
                str(r.queued_steps),
                str(r.waiting_steps),
                escape(r.last_failure),
            ]
            for r in situation.rows
        ),
    )
    return _layout("Ситуационный центр", warn + summary + rows, refresh_s=2)


def error_page(status: int, error: GovbusError) -> str:
    return _layout(
        f"Ошибка {status}",
        f'<div class="error"><b>{escape(error.code)}</b> ({escape(error.origin.value)}): '
        f'{escape(error.message)}</div><p><a href="/">на главную</a></p>',
    )
