"""The whole bus on localhost, as real processes: `make demo`, `govbus up` and the tests.

`Stack(StackOptions(...)).start()` brings up, on loopback with ports chosen by
the OS (port 0 and ready files):

1. a test PKI (the CA, the consent service's keys, a ЦОН operator's key, the
   deployment's audit pseudonym key) and every implemented adapter's synthetic
   store (generated once per seed/size/code, cached, copied per run);
2. the registry (SQLite state); through its admin API: the agencies, the ЦОН and
   the portal as members with their subsystems, the `group:service-centre` and
   `group:portal` groups, one security server per member (registered before it
   starts, its address set once it has bound its port), every adapter's service
   as its `publish.json` says, and the access rights to the groups;
3. concurrently: every adapter (`govbus adapter serve`), every security server
   (`govbus ss serve`, the global configuration fetched from the registry over
   TLS), and the consent service (registered as the bus's consent service);
4. the ЦОН service-centre application (`govbus centre serve`) on the ЦОН's own
   consumer security server.

It is ready when every security server runs the configuration that has every
address in it and follows the consent revocation feed. `stop()` stops everything
it started, by pid, in reverse order (SIGTERM, then SIGKILL after a grace),
also when start-up failed halfway or was interrupted with Ctrl-C. Children run in
their own session so that a Ctrl-C reaches only this process, which then stops
them in order.

A run lives in `<state>/run/` (wiped at each start; logs in `run/logs/`, the
layout in `run/stack.json`, every pid as it starts in `run/pids`); the store cache
in `<cache>` survives. One stack per state folder (a lock file says so); a start
first stops what a killed earlier stack left running in that folder.

This module must never signal a process it did not start, nor bind anything but
loopback.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shlex
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from govbus.errors import ConfigInvalid, ServiceUnavailable
from govbus.pb.govbus.v1 import globalconf_pb2, security_server_pb2, security_server_pb2_grpc
from govbus.process import GovbusProcess
from security_server.config import write_ss_config

__all__ = [
    "CENTRE_MEMBER",
    "CENTRE_SUBSYSTEM",
    "GROUPS",
    "OPERATOR_NAME",
    "PORTAL_MEMBER",
    "PORTAL_SUBSYSTEM",
    "AdapterInfo",
    "ServerInfo",
    "Stack",
    "StackInfo",
    "StackOptions",
    "running_stack",
    "write_env_file",
]

#: The ЦОН (service centres) and the e-gov portal: the two consumers of the bus.
CENTRE_MEMBER = "KZ/GOV/030140100014"
CENTRE_SUBSYSTEM = f"{CENTRE_MEMBER}/service-centre"
PORTAL_MEMBER = "KZ/GOV/030240100028"
PORTAL_SUBSYSTEM = f"{PORTAL_MEMBER}/portal"
#: The groups every adapter's publish.json grants its service to, and who is in them.
GROUPS = {"group:service-centre": CENTRE_SUBSYSTEM, "group:portal": PORTAL_SUBSYSTEM}
#: The ЦОН operator whose certificate the service-centre application holds.
OPERATOR_NAME = "operator-017"

_PLACEHOLDER_ADDRESS = "127.0.0.1:1"  # a server is registered before it has bound its port
_STOP_PHASES = ("centre", "ss", "consent", "adapter", "registry")


@dataclass(frozen=True)
class StackOptions:
    state_dir: Path = Path("var/stack")
    #: Where generated stores are kept between runs (default: `<state>/../cache`).
    cache_dir: Path | None = None
    persons: int = 100_000
    seed: int = 1
    #: Agency codes to run; None = every adapter implemented under adapters/.
    adapters: tuple[str, ...] | None = None
    portal: bool = True
    centre: bool = True
    #: How often security servers poll the registry (seconds).
    conf_interval_s: float = 1.0
    #: Breakers that judge after a few calls, so a failing registry shows within seconds
    #: (the security server's defaults wait for ten calls and stay open five seconds).
    quick_breakers: bool = True
    #: The longest the service centre waits between two retries of a queued step.
    queue_max_backoff_s: float = 10.0
    ready_timeout_s: float = 90.0
    progress: Callable[[str], None] | None = None

    @property
    def cache(self) -> Path:
        return self.cache_dir or self.state_dir.resolve().parent / "cache"


@dataclass(frozen=True)
class ServerInfo:
    id: str
    member: str
    role: str  # "provider" (an agency's) or "consumer" (the ЦОН's, the portal's)
    agency: str  # the agency code of a provider server, else ""
    consumer: str  # local (plaintext, loopback) address: clients and `govbus ss status`
    provider: str  # mutual-TLS address other security servers call
    metrics: str
    pid: int
    directory: str
    audit_store: str
    signing_cert: str


@dataclass(frozen=True)
class AdapterInfo:
    code: str
    service: str
    server: str
    address: str
    pid: int
    db: str


@dataclass(frozen=True)
class StackInfo:
    state_dir: str
    run_dir: str
    ca_cert: str
    passphrase_file: str
    pseudonym_key: str
    registry_public: str
    registry_admin: str
    operator_cert: str
    operator_key: str
    consent_address: str
    consent_operator_address: str
    consent_outbox: str
    #: The ЦОН operator's key and certificate (consent service, operator port).
    counter_operator_cert: str
    counter_operator_key: str
    centre_url: str
    centre_subsystem: str
    portal_subsystem: str
    servers: dict[str, ServerInfo]
    adapters: dict[str, AdapterInfo]
    persons: int
    seed: int
    startup_s: float
    timings: dict[str, float] = field(default_factory=dict)
    #: Every process the stack started, by name (registry, consent, adapter-…, ss-…, centre).
    processes: dict[str, int] = field(default_factory=dict)

    @property
    def centre_server(self) -> ServerInfo:
        return self.servers[f"{CENTRE_MEMBER}/ss1"]

    @property
    def portal_server(self) -> ServerInfo | None:
        return self.servers.get(f"{PORTAL_MEMBER}/ss1")

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2)

    def environment(self) -> dict[str, str]:
        """The variables that point `govbus` commands at this stack, seen from the ЦОН:
        its security server and subsystem, the registry (public and, as its operator,
        admin), the consent service's operator port with the counter operator's key,
        and `GOVBUS_SERVICE_<CODE>` for every adapter's service id."""
        return {
            "GOVBUS_BUS": self.centre_server.consumer,
            "GOVBUS_CLIENT": self.centre_subsystem,
            "GOVBUS_REGISTRY": self.registry_public,
            "GOVBUS_CA": self.ca_cert,
            "GOVBUS_REGISTRY_ADMIN": self.registry_admin,
            "GOVBUS_ADMIN_CERT": self.operator_cert,
            "GOVBUS_ADMIN_KEY": self.operator_key,
            "GOVBUS_CONSENT_ADDRESS": self.consent_operator_address,
            "GOVBUS_CA_CERT": self.ca_cert,
            "GOVBUS_OPERATOR_CERT": self.counter_operator_cert,
            "GOVBUS_OPERATOR_KEY": self.counter_operator_key,
            **{f"GOVBUS_SERVICE_{code.upper()}": a.service for code, a in self.adapters.items()},
        }

    def shell_exports(self) -> list[str]:
        """`environment()` as POSIX shell lines; the key passphrase is read from its file,
        never written out."""
        lines = [f'export GOVBUS_KEY_PASSPHRASE="$(cat {shlex.quote(self.passphrase_file)})"']
        lines += [f"export {k}={shlex.quote(v)}" for k, v in self.environment().items()]
        return lines

    @classmethod
    def from_json(cls, text: str) -> StackInfo:
        data = json.loads(text)
        data["servers"] = {k: ServerInfo(**v) for k, v in data["servers"].items()}
        data["adapters"] = {k: AdapterInfo(**v) for k, v in data["adapters"].items()}
        return cls(**data)


@dataclass
class _Agency:
    code: str
    member: str
    title: str
    publication: Any  # adapters.sdk.agency.Publication
    descriptor_set: bytes
    server_id: str


@dataclass
class _Running:
    name: str
    phase: str
    process: GovbusProcess


class Stack:
    """Start, stop and poke the whole bus; see the module docstring."""

    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self.state_dir = self.options.state_dir.resolve()
        self.run_dir = self.state_dir / "run"
        self.logs = self.run_dir / "logs"
        self.passphrase = secrets.token_urlsafe(24).encode()
        self._env = {"GOVBUS_KEY_PASSPHRASE": self.passphrase.decode()}
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        self._stopping = False
        self._lock_file: Any = None
        self._info: StackInfo | None = None
        self._subsystems: set[str] = set()
        self.timings: dict[str, float] = {}

    # --- public API --------------------------------------------------------------------------

    @property
    def info(self) -> StackInfo:
        if self._info is None:
            raise ConfigInvalid("the stack is not started")
        return self._info

    def pids(self) -> dict[str, int]:
        """Every process this stack started and still holds, by name."""
        with self._lock:
            return {
                name: run.process.proc.pid
                for name, run in self._running.items()
                if run.process.proc is not None
            }

    def log_of(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> StackInfo:
        """Bring everything up; on any failure (or Ctrl-C) stop what was started and raise."""
        started = time.perf_counter()
        self._stopping = False
        try:
            self._take_lock()
            self._info = self._start(started)
        except BaseException:
            self.stop()
            raise
        return self._info

    def stop(self) -> None:
        """Stop every process started here, newest phase first; idempotent."""
        with self._lock:
            self._stopping = True
            running = list(self._running.values())
        for phase in _STOP_PHASES:
            group = [r.process for r in running if r.phase == phase]
            for process in group:
                # Ask them all at once, then wait for each: a phase stops in parallel.
                if process.proc is not None and process.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.proc.send_signal(signal.SIGCONT)
                        process.proc.terminate()
            for process in group:
                process.close()
        with self._lock:
            self._running.clear()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- failures on purpose ----------------------------------------------------------------

    def adapter_pid(self, code: str) -> int:
        return self._process(f"adapter-{code}").pid

    def kill_adapter(self, code: str) -> int:
        """SIGKILL an adapter (a registry that crashed); returns the pid it had."""
        process = self._process(f"adapter-{code}")
        pid = process.pid
        process.kill()
        return pid

    def restart_adapter(self, code: str) -> int:
        """Start a killed adapter again on the same port (its security server's
        configuration names that port); returns the new pid."""
        adapter = self.info.adapters[code]
        name = f"adapter-{code}"
        old = self._process(name)
        old.close()
        port = adapter.address.rpartition(":")[2]
        process = self._launch(name, "adapter", *self._adapter_args(code, Path(adapter.db), port))
        self._replace_adapter_pid(code, process.pid)
        return process.pid

    def pause_adapter(self, code: str) -> None:
        """SIGSTOP an adapter (a registry that hangs: calls run into their deadline)."""
        self._process(f"adapter-{code}").signal(signal.SIGSTOP)

    def resume_adapter(self, code: str) -> None:
        self._process(f"adapter-{code}").signal(signal.SIGCONT)

    # --- start-up ----------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        if self.options.progress is not None:
            self.options.progress(text)

    def _mark(self, name: str, since: float) -> None:
        self.timings[name] = round(time.perf_counter() - since, 3)

    def _take_lock(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        handle = (self.state_dir / "stack.lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ConfigInvalid(
                f"another stack is running on {self.state_dir}; stop it or use --state"
            ) from None
        self._lock_file = handle

    def _start(self, started: float) -> StackInfo:
        from adapters.population import World
        from adapters.sdk.agency import AGENCIES, adapter_codes, load
        from service_centre.stores import prepare_stores

        options = self.options
        # Everything that can be refused is refused before the previous run is touched.
        World(options.seed, options.persons)
        codes = list(options.adapters) if options.adapters is not None else adapter_codes()
        agencies: dict[str, _Agency] = {}
        for code in codes:
            adapter = load(code)
            publication = adapter.publication
            agencies[code] = _Agency(
                code=code,
                member=publication.member,
                title=AGENCIES[code].title if code in AGENCIES else publication.title,
                publication=publication,
                descriptor_set=adapter.descriptor_set(),
                server_id=f"{publication.member}/ss1",
            )
        if self.run_dir.exists():
            self._stop_leftovers()
            shutil.rmtree(self.run_dir)
        self.logs.mkdir(parents=True)
        passphrase_file = self.run_dir / "passphrase"
        passphrase_file.write_bytes(self.passphrase)
        passphrase_file.chmod(0o600)
        self._say(f"{len(agencies)} adapters implemented: {', '.join(agencies)}")

        # Enough threads for every job at once: security-server jobs wait on adapter jobs.
        workers = 2 * len(agencies) + 8
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stack") as pool:
            try:
                return self._bring_up(pool, agencies, started, passphrase_file, prepare_stores)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                # Stop what runs before the pool is joined: a job waiting for a process to
                # be ready then fails at once instead of waiting out its timeout.
                self.stop()
                raise

    def _bring_up(
        self,
        pool: ThreadPoolExecutor,
        agencies: dict[str, _Agency],
        started: float,
        passphrase_file: Path,
        prepare_stores: Any,
    ) -> StackInfo:
        from registry.bootstrap import serve_args
        from registry.client import AdminClient

        options = self.options
        t = time.perf_counter()
        stores_job = pool.submit(
            prepare_stores,
            list(agencies),
            seed=options.seed,
            persons=options.persons,
            cache_dir=options.cache,
            run_dir=self.run_dir / "stores",
            progress=self._say,
            log=self.logs / "populate.log",
        )
        keys = self._make_pki()
        self._mark("pki", t)

        registry_dir = self.run_dir / "registry"
        registry_job = pool.submit(
            self._launch,
            "registry",
            "registry",
            *serve_args(registry_dir, regen_interval=0.2),
            "--pki",
            str(keys["pki"]),
        )
        adapter_jobs = {
            code: pool.submit(self._start_adapter, code, stores_job) for code in agencies
        }
        registry = registry_job.result()
        self._mark("registry-ready", started)
        self._say(f"registry ready on {registry.info['public']}")

        servers = self._server_plan(agencies)
        centre_ss = f"{CENTRE_MEMBER}/ss1"
        with AdminClient.operator(registry.info, self.passphrase) as admin:
            t = time.perf_counter()
            credentials = self._register_parties(admin, agencies, servers)
            # Each security server starts as soon as it is registered and its adapters
            # are up; it picks up the services published meanwhile at its next poll.
            ss_jobs = {
                server_id: pool.submit(
                    self._start_server,
                    server_id,
                    credentials[server_id],
                    registry.info["public"],
                    {
                        str(a.publication.service_id): adapter_jobs[a.code]
                        for a in agencies.values()
                        if a.server_id == server_id
                    },
                    keys["pseudonym"],
                )
                for server_id in servers
            }
            self._publish(admin, agencies)
            admin.wait_published()
            self._mark("registered", t)
            # The consent service checks consent requests against the configuration it
            # loads at start: it starts once every service is published.
            consent = self._start_consent(keys, registry.info["public"])
            admin.set_consent_service(
                f"127.0.0.1:{consent.info['port']}", keys["consent.cert"].read_bytes()
            )
            centre_job: Future[GovbusProcess] | None = None
            if options.centre:
                centre_job = pool.submit(
                    self._start_centre, keys, ss_jobs[centre_ss], consent, agencies
                )
            ss_processes: dict[str, GovbusProcess] = {}
            for server_id, job in ss_jobs.items():
                ss_processes[server_id] = job.result()
                admin.set_server_address(
                    server_id, f"127.0.0.1:{ss_processes[server_id].info['provider']}"
                )
            version = admin.wait_published()
            self._mark("servers-started", started)
        adapters = {code: job.result() for code, job in adapter_jobs.items()}
        stores = stores_job.result()
        self.timings["stores"] = round(stores.seconds, 3)

        self._wait_in_force(
            {sid: f"127.0.0.1:{p.info['consumer']}" for sid, p in ss_processes.items()}, version
        )
        self._mark("conf-in-force", started)
        centre_url = ""
        if centre_job is not None:
            centre_url = centre_job.result().info["url"]
            self._mark("centre-ready", started)

        info = StackInfo(
            state_dir=str(self.state_dir),
            run_dir=str(self.run_dir),
            ca_cert=str(keys["ca.cert"]),
            passphrase_file=str(passphrase_file),
            pseudonym_key=str(keys["pseudonym"]),
            registry_public=registry.info["public"],
            registry_admin=registry.info["admin"],
            operator_cert=registry.info["operator_cert"],
            operator_key=registry.info["operator_key"],
            consent_address=f"127.0.0.1:{consent.info['port']}",
            consent_operator_address=f"127.0.0.1:{consent.info['operator_port']}",
            consent_outbox=consent.info["outbox"],
            counter_operator_cert=str(keys["operator.cert"]),
            counter_operator_key=str(keys["operator.key"]),
            centre_url=centre_url,
            centre_subsystem=CENTRE_SUBSYSTEM,
            portal_subsystem=PORTAL_SUBSYSTEM if options.portal else "",
            servers={
                sid: self._server_info(sid, servers[sid], agencies, ss_processes[sid])
                for sid in servers
            },
            adapters={
                code: AdapterInfo(
                    code=code,
                    service=str(agency.publication.service_id),
                    server=agency.server_id,
                    address=f"127.0.0.1:{adapters[code].info['port']}",
                    pid=adapters[code].pid,
                    db=str(stores.paths[code]),
                )
                for code, agency in agencies.items()
            },
            persons=options.persons,
            seed=options.seed,
            startup_s=round(time.perf_counter() - started, 3),
            timings=dict(self.timings),
            processes=self.pids(),
        )
        (self.run_dir / "stack.json").write_text(info.to_json())
        write_env_file(self.run_dir / "env.sh", info)
        return info

    # --- the pieces ---------------------------------------------------------------------------

    def _make_pki(self) -> dict[str, Path]:
        """The CA and the keys issued outside the registry (before it runs: one writer of
        the CA's index at a time)."""
        from audit_log.keys import generate_key_file
        from govbus.crypto.keys import atomic_write, save_private_key
        from govbus.crypto.pki import CertificateAuthority, Role, certificate_pem

        pki = self.run_dir / "pki"
        ca = CertificateAuthority.init(pki, self.passphrase)
        keys_dir = self.run_dir / "keys"
        keys_dir.mkdir()
        files: dict[str, Path] = {"pki": pki, "ca.cert": pki / "ca.cert.pem"}
        issued = {
            "consent": ca.issue_key(Role.CONSENT, "consent-service"),
            "consent-tls": ca.issue_key(
                Role.SERVER, "consent-service", hosts=["localhost", "127.0.0.1", "::1"]
            ),
            "operator": ca.issue_key(Role.OPERATOR, OPERATOR_NAME),
        }
        for name, key in issued.items():
            save_private_key(keys_dir / f"{name}.key.pem", key.key, self.passphrase)
            atomic_write(keys_dir / f"{name}.cert.pem", certificate_pem(key.certificate))
            files[f"{name}.key"] = keys_dir / f"{name}.key.pem"
            files[f"{name}.cert"] = keys_dir / f"{name}.cert.pem"
        files["pseudonym"] = keys_dir / "pseudonym.key"
        generate_key_file(files["pseudonym"])
        return files

    def _start_adapter(self, code: str, stores: Future[Any]) -> GovbusProcess:
        path = stores.result().paths[code]
        return self._launch(f"adapter-{code}", "adapter", *self._adapter_args(code, path, "0"))

    def _adapter_args(self, code: str, db: Path, port: str) -> list[str]:
        return ["adapter", "serve", code, "--db", str(db), "--port", port, "--log-level", "warning"]

    def _server_plan(self, agencies: dict[str, _Agency]) -> dict[str, tuple[str, str, str]]:
        """server id -> (member, role, agency code)."""
        plan: dict[str, tuple[str, str, str]] = {}
        for agency in agencies.values():
            plan.setdefault(agency.server_id, (agency.member, "provider", agency.code))
        plan[f"{CENTRE_MEMBER}/ss1"] = (CENTRE_MEMBER, "consumer", "")
        if self.options.portal:
            plan[f"{PORTAL_MEMBER}/ss1"] = (PORTAL_MEMBER, "consumer", "")
        return plan

    def _register_parties(
        self, admin: Any, agencies: dict[str, _Agency], servers: dict[str, tuple[str, str, str]]
    ) -> dict[str, Any]:
        """Members, subsystems, groups and security servers (with their certificates)."""
        from registry.bootstrap import register_server

        members = {a.member: a.title for a in agencies.values()}
        members[CENTRE_MEMBER] = "Государственная корпорация «Правительство для граждан» — ЦОН"
        subsystems = {
            f"{a.member}/{a.publication.subsystem}": a.publication.title for a in agencies.values()
        }
        subsystems[CENTRE_SUBSYSTEM] = "Приложение оператора ЦОН"
        if self.options.portal:
            members[PORTAL_MEMBER] = "Портал электронного правительства egov.kz"
            subsystems[PORTAL_SUBSYSTEM] = "Портал egov.kz"
        self._subsystems = set(subsystems)
        for member, name in members.items():
            admin.add_member(member, name)
        for subsystem, name in subsystems.items():
            admin.add_subsystem(subsystem, name)
        for group, subsystem in GROUPS.items():
            if subsystem == PORTAL_SUBSYSTEM and not self.options.portal:
                continue
            admin.add_group(group)
            admin.add_group_member(group, subsystem)
        named = {c for a in agencies.values() for c in a.publication.access}
        for group in sorted(c for c in named if c.startswith("group:") and c not in GROUPS):
            # An adapter may grant its service to a group of consumers this local bus does
            # not run (e.g. the police): the group exists, empty, so the grant is recorded.
            admin.add_group(group)
        credentials = {
            server_id: register_server(
                admin,
                server_id,
                _PLACEHOLDER_ADDRESS,
                self.run_dir / "ss" / server_id.replace("/", "_"),
                self.passphrase,
            )
            for server_id in servers
        }
        return credentials

    def _publish(self, admin: Any, agencies: dict[str, _Agency]) -> None:
        """Every adapter's service as its publish.json says, and the access rights."""
        subsystems = self._subsystems
        breaker = (
            globalconf_pb2.BreakerSettings(
                window_size=10, minimum_calls=4, failure_rate_threshold=0.5, open_ms=3000
            )
            if self.options.quick_breakers
            else None
        )
        for agency in agencies.values():
            publication = agency.publication
            service_id = str(publication.service_id)
            admin.publish_service(
                service_id,
                publication.grpc_service,
                agency.descriptor_set,
                [agency.server_id],
                personal_data=publication.personal_data,
                consent_policy=publication.consent_policy_word,
                deadline_ms=publication.default_deadline_ms,
                idempotent=publication.idempotent,
                fields=dict(publication.fields) or None,
                resilience=breaker,
                description=publication.title[:1000],
            )
            for client in publication.access:
                if client == "group:portal" and not self.options.portal:
                    continue
                if not client.startswith("group:") and client not in subsystems:
                    self._say(f"{agency.code}: access for {client} skipped (not on this bus)")
                    continue
                admin.grant(service_id, client)

    def _start_consent(self, keys: dict[str, Path], registry_public: str) -> GovbusProcess:
        state = self.run_dir / "consent"
        state.mkdir()
        return self._launch(
            "consent",
            "consent",
            "consent",
            "serve",
            "--state-dir",
            str(state),
            "--ca",
            str(keys["ca.cert"]),
            "--signing-key",
            str(keys["consent.key"]),
            "--signing-cert",
            str(keys["consent.cert"]),
            "--tls-key",
            str(keys["consent-tls.key"]),
            "--tls-cert",
            str(keys["consent-tls.cert"]),
            "--registry",
            registry_public,
            # A local bus for trying things: the same citizens confirm many times.
            "--otp-rate-limit",
            "1000",
        )

    def _start_server(
        self,
        server_id: str,
        credentials: Any,
        registry_public: str,
        adapters: dict[str, Future[GovbusProcess]],
        pseudonym_key: Path,
    ) -> GovbusProcess:
        directory = Path(credentials.directory)
        config = write_ss_config(
            directory,
            server_id,
            ca_certificate=Path("ca.cert.pem"),
            conf_source=f"grpcs://{registry_public}",
            poll_s=self.options.conf_interval_s,
            adapters={
                service: f"127.0.0.1:{job.result().info['port']}"
                for service, job in adapters.items()
            },
            listen={"consumer": "127.0.0.1:0", "provider": "127.0.0.1:0", "metrics": "127.0.0.1:0"},
            extra=f'[audit]\npseudonym_key = "{pseudonym_key}"\ncheckpoint_interval_s = 5\n',
        )
        return self._launch(
            f"ss-{server_id.split('/')[2]}", "ss", "ss", "serve", "--config", str(config)
        )

    def _start_centre(
        self,
        keys: dict[str, Path],
        security_server: Future[GovbusProcess],
        consent: GovbusProcess,
        agencies: dict[str, _Agency],
    ) -> GovbusProcess:
        from service_centre.config import write_config

        directory = self.run_dir / "centre"
        config = write_config(
            directory,
            client=CENTRE_SUBSYSTEM,
            security_server=f"127.0.0.1:{security_server.result().info['consumer']}",
            operator=OPERATOR_NAME,
            ca_cert=keys["ca.cert"],
            operator_key=keys["operator.key"],
            operator_cert=keys["operator.cert"],
            consent_address=f"127.0.0.1:{consent.info['port']}",
            consent_operator_address=f"127.0.0.1:{consent.info['operator_port']}",
            services={code: str(a.publication.service_id) for code, a in agencies.items()},
            max_backoff_s=self.options.queue_max_backoff_s,
        )
        return self._launch("centre", "centre", "centre", "serve", "--config", str(config))

    def _wait_in_force(self, consumers: dict[str, str], version: int) -> None:
        """Until every security server runs `version` (or newer) and, so that the first
        personal-data exchange is not refused as stale, has read the revocation feed."""
        deadline = time.monotonic() + self.options.ready_timeout_s
        pending = dict(consumers)
        last: dict[str, str] = {}
        while pending:
            for server_id, address in list(pending.items()):
                with grpc.insecure_channel(address) as channel:
                    stub = security_server_pb2_grpc.SecurityServerAdminStub(channel)
                    try:
                        reply = stub.Status(security_server_pb2.StatusRequest(), timeout=5)
                    except grpc.RpcError as exc:
                        last[server_id] = str(exc.code())
                        continue
                if reply.conf_version >= version and reply.consent_feed_age_ms >= 0:
                    del pending[server_id]
                else:
                    last[server_id] = (
                        f"conf v{reply.conf_version} (want v{version}), "
                        f"feed age {reply.consent_feed_age_ms} ms {reply.conf_error}"
                    )
            if self._stopping:
                raise ServiceUnavailable("the stack is stopping")
            if pending and time.monotonic() > deadline:
                raise ServiceUnavailable(
                    "security servers not ready: "
                    + "; ".join(f"{sid}: {last.get(sid, '?')}" for sid in pending)
                )
            if pending:
                time.sleep(0.1)

    def _server_info(
        self,
        server_id: str,
        plan: tuple[str, str, str],
        agencies: dict[str, _Agency],
        process: GovbusProcess,
    ) -> ServerInfo:
        member, role, code = plan
        directory = self.run_dir / "ss" / server_id.replace("/", "_")
        return ServerInfo(
            id=server_id,
            member=member,
            role=role,
            agency=code,
            consumer=f"127.0.0.1:{process.info['consumer']}",
            provider=f"127.0.0.1:{process.info['provider']}",
            metrics=f"127.0.0.1:{process.info['metrics']}" if "metrics" in process.info else "",
            pid=process.pid,
            directory=str(directory),
            audit_store=f"sqlite:///{directory / 'state' / 'audit.db'}",
            signing_cert=str(directory / "signing.cert.pem"),
        )

    # --- processes ---------------------------------------------------------------------------

    def _launch(self, name: str, phase: str, *args: str) -> GovbusProcess:
        process = GovbusProcess(
            *args,
            env=self._env,
            ready_timeout=self.options.ready_timeout_s,
            log_path=self.logs / f"{name}.log",
            new_session=True,
            on_spawn=lambda pid: self._record_pid(name, pid),
        )
        with self._lock:
            if self._stopping:
                raise ServiceUnavailable("the stack is stopping")
            self._running[name] = _Running(name, phase, process)
        try:
            process.start()
        except RuntimeError as exc:
            raise ServiceUnavailable(f"{name} did not start: see {process.log_path}") from exc
        with self._lock:
            if self._stopping:
                # stop() ran while this one was starting: it must not outlive the stack.
                process.close()
                raise ServiceUnavailable("the stack is stopping")
        return process

    def _record_pid(self, name: str, pid: int) -> None:
        """Every pid started, as it starts: a later start can stop the leftovers of a
        stack that was itself killed (SIGKILL leaves its children running)."""
        with self._lock, (self.run_dir / "pids").open("a") as pids:
            pids.write(f"{pid} {name}\n")

    def _stop_leftovers(self) -> None:
        """SIGTERM processes a killed earlier stack left in this state folder: only pids it
        recorded whose command line names this run folder (so never a reused pid)."""
        try:
            lines = (self.run_dir / "pids").read_text().split("\n")
        except FileNotFoundError:
            return
        marker = str(self.run_dir).encode()
        for line in lines:
            pid_text, _, name = line.partition(" ")
            if not pid_text.isdigit():
                continue
            pid = int(pid_text)
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if marker in command:
                self._say(f"stopping {name} (pid {pid}) left running by an earlier stack")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                    _wait_gone(pid, 10.0)

    def _process(self, name: str) -> GovbusProcess:
        with self._lock:
            running = self._running.get(name)
        if running is None:
            raise ConfigInvalid(f"no process {name} in this stack")
        return running.process

    def _replace_adapter_pid(self, code: str, pid: int) -> None:
        info = self.info
        old = info.adapters[code]
        adapters = {**info.adapters, code: AdapterInfo(**{**asdict(old), "pid": pid})}
        processes = {**info.processes, f"adapter-{code}": pid}
        self._info = StackInfo(**{**_shallow(info), "adapters": adapters, "processes": processes})
        (self.run_dir / "stack.json").write_text(self._info.to_json())


def write_env_file(path: Path, info: StackInfo) -> None:
    """A shell file to `source` that points `govbus` commands at the stack (0600: it
    names key files)."""
    from govbus.crypto.keys import atomic_write

    text = "# govbus on localhost: source this file\n" + "\n".join(info.shell_exports()) + "\n"
    atomic_write(path, text.encode(), mode=0o600)


def _wait_gone(pid: int, timeout: float) -> None:
    """Until `pid` has exited (it is not our child: no waitpid), then SIGKILL."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state == "Z":
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _shallow(info: StackInfo) -> dict[str, Any]:
    return {name: getattr(info, name) for name in info.__dataclass_fields__}


@contextlib.contextmanager
def running_stack(options: StackOptions) -> Iterator[Stack]:
    """`with running_stack(options) as stack:` — started, and stopped whatever happens."""
    stack = Stack(options)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
