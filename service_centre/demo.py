"""`make demo`: the whole bus on localhost, a morning at a ЦОН, a registry failing, the logs.

1. Starts the stack (`service_centre.stack`): PKI, registry, consent service, one
   security server per agency plus the ЦОН's and the portal's, every implemented
   adapter with its synthetic store, and the service-centre application.
2. Citizens visit the ЦОН (through its JSON API, as the operator's browser would):
   consent by a code sent to their phone (read from the SMS outbox), registries
   queried through the ЦОН's security server, composite services completed — a
   personal-data certificate and a newborn registration over five registries.
3. One registry fails on purpose: its adapter process is killed (`--fault kill`)
   or frozen (`--fault hang`). Services that do not need it keep working; the
   composite ones return what they can, mark what is missing and queue the rest;
   the situation centre shows the breaker open.
4. The registry comes back; the queue drains and the partial visits complete.
5. Everything stops; the audit logs are verified at rest with the auditor's own
   commands (printed, and run).

Sample citizens are picked from the same deterministic synthetic world the
stores were filled from. Everything runs as real processes on loopback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from adapters.population import World
from adapters.population.world import MaritalStatus, Person
from consent.sms import read_outbox
from govbus.ids import Sex
from service_centre.api import CentreApi
from service_centre.stack import Stack, StackInfo, StackOptions

__all__ = ["Citizens", "main", "pick_citizens", "run_demo"]

# Outside a terminal rich would wrap at 80 columns; $COLUMNS still wins when set.
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 120)

#: 100,000 persons are generated once (about 15 s for five registries on two cores) and
#: cached; later runs copy the cached stores.
DEFAULT_PERSONS = 100_000
FAILING = "migration"  # the registry that fails on purpose: most composites need it

_COLOURS = {
    "done": "green",
    "complete": "green",
    "queued": "yellow",
    "waiting": "yellow",
    "partial": "yellow",
    "failed": "red",
    "blocked": "red",
    "incomplete": "red",
}


class Citizens:
    """Sample citizens for the visits, all distinct."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._used: set[int] = set()

    def _people(self) -> Iterator[Person]:
        for person in self.world.persons():
            if person.index not in self._used and person.alive:
                yield person

    def take(self, *, mother: bool = False, moved: bool = False, married: bool = False) -> Person:
        for person in self._people():
            if mother and not (person.sex is Sex.FEMALE and 20 <= person.age() <= 38):
                continue
            if moved and person.previous_registration is None:
                continue
            if married and person.spouse is None:
                continue
            if person.age() < 18 or person.document is None:
                continue
            self._used.add(person.index)
            return person
        raise LookupError("no such citizen in this world")

    def father_of_child(self, mother: Person) -> str:
        """The mother's husband's IIN when he is alive and married to her, else ""."""
        if mother.spouse is None or mother.marital_status is not MaritalStatus.MARRIED:
            return ""
        husband = self.world.person(mother.spouse)
        return husband.iin if husband.alive and husband.sex is Sex.MALE else ""


def pick_citizens(seed: int, persons: int) -> Citizens:
    return Citizens(World(seed, persons))


# --- printing -----------------------------------------------------------------------------------


def _state(text: str) -> str:
    colour = _COLOURS.get(text)
    return f"[{colour}]{text}[/]" if colour else text


def show_visit(visit: dict[str, Any], title: str, seconds: float | None = None) -> None:
    took = f" in {seconds * 1000:.0f} ms" if seconds is not None else ""
    console.print(
        f"  [bold]{title}[/] for {visit['iin']}: {_state(visit['status'])}{took}", highlight=False
    )
    table = Table("step", "registry", "state", "tries", "why", box=None, padding=(0, 1))
    for step in visit["steps"]:
        why = f"{step['error_code']} {step['error']}".strip()
        table.add_row(
            step["title"], step["agency"], _state(step["state"]), str(step["attempts"]), why[:70]
        )
    console.print(table)
    certificate = visit.get("certificate")
    if certificate:
        lines = Table(title=certificate["title"], show_header=False, padding=(0, 1))
        for line in certificate["lines"]:
            value = (
                f"[yellow]нет данных — {line['missing']} в очереди[/]"
                if line["missing"]
                else line["value"]
            )
            lines.add_row(line["label"], value)
        console.print(lines)


def show_situation(situation: dict[str, Any]) -> None:
    table = Table(
        "registry",
        "breaker",
        "fail %",
        "in flight",
        "calls",
        "queued at ЦОН",
        "waiting",
        "last failure",
        title=f"situation centre — ЦОН queue depth {situation['queue_depth']}",
    )
    for row in situation["rows"]:
        breaker = row["breaker"]
        colour = {"OPEN": "red", "HALF_OPEN": "yellow", "CLOSED": "green"}.get(breaker, "white")
        table.add_row(
            row["agency"],
            f"[{colour}]{breaker}[/]",
            f"{row['failure_rate'] * 100:.0f}",
            str(row["in_flight"]),
            str(row["calls"]),
            str(row["queued_steps"]),
            str(row["waiting_steps"]),
            row["last_failure"][:60],
        )
    console.print(table)


# --- the visits ---------------------------------------------------------------------------------


class Counter:
    """The operator's side of a visit: open it, read the SMS code, confirm."""

    def __init__(self, info: StackInfo) -> None:
        self.api = CentreApi(info.centre_url)
        self.outbox = Path(info.consent_outbox)

    def code_for(self, phone: str, since_ms: int) -> str:
        for message in reversed(read_outbox(self.outbox)):
            if message.to == phone and message.sent_at_ms >= since_ms and message.code:
                return message.code
        raise LookupError(f"no SMS code sent to {phone}")

    def visit(
        self, service: str, person: Person, inputs: dict[str, str] | None = None
    ) -> tuple[dict[str, Any], float]:
        asked_ms = int(time.time() * 1000) - 1000
        opened = self.api.open_visit(
            service, person.iin, inputs=inputs, consent={"method": "otp", "phone": person.phone}
        )
        if opened["stage"] != "awaiting-consent":
            return opened, 0.0
        code = self.code_for(person.phone, asked_ms)
        started = time.perf_counter()
        done = self.api.confirm(opened["id"], code)
        return done, time.perf_counter() - started


def _newborn_inputs(
    citizens: Citizens, mother: Person, name: str, certificate: str
) -> dict[str, str]:
    return {
        "last_name": mother.last_name,
        "first_name": name,
        "sex": "female",
        "birth_place": f"г. {mother.address.city.name}",
        "father_iin": citizens.father_of_child(mother),
        "birth_certificate": certificate,
    }


def run_demo(stack: Stack, fault: str = "kill") -> dict[str, Any]:
    """The visits, the failure and the recovery on a started stack; returns figures."""
    counter = Counter(stack.info)
    citizens = pick_citizens(stack.info.seed, stack.info.persons)
    figures: dict[str, Any] = {}
    _at_the_counter(counter, citizens, figures)
    partial = _registry_fails(stack, counter, citizens, fault, figures)
    _registry_back(stack, counter, fault, partial, figures)
    return figures


def _at_the_counter(counter: Counter, citizens: Citizens, figures: dict[str, Any]) -> None:
    console.rule("1. citizens at the counter")
    first = citizens.take()
    console.print(
        f"{first.full_name} asks for a personal-data certificate; an SMS code confirms the "
        f"consent (phone {first.phone[:4]}…{first.phone[-2:]}).",
        highlight=False,
    )
    visit, seconds = counter.visit("personal-data", first)
    show_visit(visit, "personal-data certificate", seconds)
    figures["personal_data_ms"] = round(seconds * 1000)

    mother = citizens.take(mother=True)
    console.print(
        f"\n{mother.full_name} registers her newborn: ГБД ФЛ → ЗАГС → migration → education, "
        "her consent by SMS, the child's given in person through the operator.",
        highlight=False,
    )
    visit, seconds = counter.visit(
        "newborn-registration", mother, _newborn_inputs(citizens, mother, "Айару", "MSR-204711")
    )
    show_visit(visit, "newborn registration", seconds)
    figures["newborn_ms"] = round(seconds * 1000)
    figures["mother_iin"] = mother.iin
    if visit["status"] != "complete":
        raise RuntimeError(f"the newborn registration did not complete: {visit['status']}")


def _registry_fails(
    stack: Stack, counter: Counter, citizens: Citizens, fault: str, figures: dict[str, Any]
) -> list[str]:
    console.rule(f"2. the {FAILING} registry fails")
    pid = stack.adapter_pid(FAILING)
    if fault == "hang":
        stack.pause_adapter(FAILING)
        console.print(
            f"SIGSTOP to the {FAILING} adapter (pid {pid}): it hangs; calls hit deadlines."
        )
    else:
        stack.kill_adapter(FAILING)
        console.print(f"SIGKILL to the {FAILING} adapter (pid {pid}): it is gone.")

    visit, seconds = counter.visit("marital-status", citizens.take(married=True))
    show_visit(visit, "marital-status certificate (needs no migration)", seconds)
    figures["unaffected_status"] = visit["status"]

    visit, seconds = counter.visit("address-certificate", citizens.take(moved=True))
    show_visit(visit, "address certificate", seconds)
    partial = [visit["id"]]
    figures["degraded_address_ms"] = round(seconds * 1000)

    second = citizens.take(mother=True)
    visit, seconds = counter.visit(
        "newborn-registration", second, _newborn_inputs(citizens, second, "Аружан", "MSR-204712")
    )
    show_visit(visit, "newborn registration", seconds)
    partial.append(visit["id"])
    figures["degraded_newborn_ms"] = round(seconds * 1000)
    figures["degraded_statuses"] = [counter.api.visit(v)["status"] for v in partial]
    show_situation(counter.api.situation())
    return partial


def _registry_back(
    stack: Stack, counter: Counter, fault: str, partial: list[str], figures: dict[str, Any]
) -> None:
    console.rule(f"3. the {FAILING} registry is back")
    if fault == "hang":
        stack.resume_adapter(FAILING)
        console.print(f"SIGCONT to the {FAILING} adapter.")
    else:
        new_pid = stack.restart_adapter(FAILING)
        console.print(f"{FAILING} adapter restarted on the same port (pid {new_pid}).")
    back = time.perf_counter()
    counter.api.retry_now()
    counter.api.wait_until(
        lambda: counter.api.situation()["queue_depth"] == 0, "the queue to drain", 90
    )
    figures["drain_s"] = round(time.perf_counter() - back, 2)
    console.print(f"queue drained {figures['drain_s']:.1f} s after the registry came back:")
    for visit_id in partial:
        visit = counter.api.visit(visit_id)
        show_visit(visit, visit["service"])
    figures["final_statuses"] = [counter.api.visit(v)["status"] for v in partial]
    show_situation(counter.api.situation())


def audit_commands(info: StackInfo) -> list[list[str]]:
    """`govbus audit verify` for the ЦОН's log and ГБД ФЛ's, and "who accessed <IIN>" at
    ГБД ФЛ (the IIN is filled in by the caller)."""
    today = dt.datetime.now(dt.UTC).date()
    registry = next(s for s in info.servers.values() if s.agency == "gbdfl")
    verify = [
        f"govbus audit verify --store {s.audit_store} --cert {s.signing_cert} "
        f"--ca {info.ca_cert} --quiet".split()
        for s in (info.centre_server, registry)
    ]
    who = (
        f"govbus audit who-accessed --iin <IIN> --from {today} "
        f"--to {today + dt.timedelta(days=1)} --store {registry.audit_store} "
        f"--pseudonym-key {info.pseudonym_key}"
    ).split()
    return [*verify, who]


def run_audit(info: StackInfo, iin: str) -> bool:
    console.rule("4. the logs, verified at rest (no server running)")
    console.print("Commands an auditor runs (paths stay valid until the next run):")
    commands = [[iin if a == "<IIN>" else a for a in c] for c in audit_commands(info)]
    for command in commands:
        console.print("  " + " ".join(command), highlight=False, soft_wrap=True)
    passed = True
    for command in commands:
        console.print(f"\n$ {' '.join(command[:4])} …", highlight=False)
        done = subprocess.run(
            [sys.executable, "-m", "govbus.cli", *command[1:]],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "COLUMNS": str(console.width)},
        )
        console.print(done.stdout.rstrip() or done.stderr.rstrip(), highlight=False)
        passed = passed and done.returncode == 0
    return passed


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m service_centre.demo", description=__doc__)
    parser.add_argument("--persons", type=int, default=DEFAULT_PERSONS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--state", type=Path, default=Path("var/demo"))
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--fault", choices=("kill", "hang"), default="kill")
    args = parser.parse_args(argv)

    began = time.perf_counter()
    console.rule("govbus demo")

    def progress(text: str) -> None:
        console.print(f"[dim]{time.perf_counter() - began:6.1f} s[/] {text}", highlight=False)

    stack = Stack(
        StackOptions(
            state_dir=args.state,
            cache_dir=args.cache,
            persons=args.persons,
            seed=args.seed,
            progress=progress,
            queue_max_backoff_s=2.0,
        )
    )
    figures: dict[str, Any] = {}
    try:
        info = stack.start()
        pids = stack.pids()
        console.print(
            f"[bold green]up in {info.startup_s:.1f} s[/]: {len(pids)} processes — registry, "
            f"consent service, {len(info.servers)} security servers, {len(info.adapters)} "
            f"adapters, service centre at {info.centre_url}",
            highlight=False,
        )
        figures = run_demo(stack, args.fault)
    except KeyboardInterrupt:
        console.print("\ninterrupted")
    finally:
        stopping = time.perf_counter()
        stack.stop()
        console.print(f"everything stopped in {time.perf_counter() - stopping:.1f} s.")
    if not figures:
        sys.exit(1)
    passed = run_audit(info, figures["mother_iin"])
    console.rule("summary")
    console.print(
        f"start-up {info.startup_s:.1f} s; personal-data visit {figures['personal_data_ms']} ms; "
        f"newborn registration {figures['newborn_ms']} ms; with {FAILING} down: "
        f"{figures['unaffected_status']} / {', '.join(figures['degraded_statuses'])}; "
        f"after it came back: {', '.join(figures['final_statuses'])} "
        f"(queue drained in {figures['drain_s']} s); logs {'verified' if passed else 'FAILED'}; "
        f"whole demo {time.perf_counter() - began:.0f} s.",
        highlight=False,
        soft_wrap=True,
    )
    if not passed:
        sys.exit(1)


if __name__ == "__main__":
    main()
