"""The composed guard the consumer security server calls, on a real signed configuration."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2
from prometheus_client import CollectorRegistry, generate_latest
from rich.console import Console

from govbus.crypto.pki import CertificateAuthority, IssuedKey, Role, certificate_der
from govbus.errors import (
    ConfigInvalid,
    DeadlineExceeded,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    UnknownService,
)
from govbus.globalconf import GlobalConfView, sign_global_conf, verify_global_conf
from govbus.pb.govbus.v1 import globalconf_pb2
from govbus.serving import add_health_and_reflection
from security_server.resilience import (
    BreakerState,
    Endpoint,
    EndpointHealth,
    ExchangeGuard,
    ManualClock,
    WindowKind,
    render_shedding,
    render_status,
    service_settings,
)
from tests.conftest import PASSPHRASE

PERSON = "KZ/GOV/040340123459/gbdfl/person/v1"
CIVIL = "KZ/GOV/040340123459/zags/births/v1"
SS1 = "KZ/GOV/040340123459/ss1"
SS2 = "KZ/GOV/040340123459/ss2"


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertificateAuthority, IssuedKey]:
    ca = CertificateAuthority.init(Path(tmp_path_factory.mktemp("pki")), PASSPHRASE)
    return ca, ca.issue_key(Role.REGISTRY, "registry")


def _conf(
    version: int,
    addresses: dict[str, str],
    *,
    person: globalconf_pb2.BreakerSettings | None = None,
    deadline_ms: int = 0,
) -> globalconf_pb2.GlobalConf:
    now = time.time()
    conf = globalconf_pb2.GlobalConf(version=version, instance="KZ")
    conf.generated_at.CopyFrom(timestamp_pb2.Timestamp(seconds=int(now)))
    conf.expires_at.CopyFrom(timestamp_pb2.Timestamp(seconds=int(now + 600)))
    for server_id, address in addresses.items():
        conf.security_servers.add(id=server_id, owner="KZ/GOV/040340123459", address=address)
    service = conf.services.add(
        id=PERSON,
        grpc_service="kz.gov.gbdfl.v1.PersonRegistry",
        servers=list(addresses),
        default_deadline_ms=deadline_ms,
    )
    if person is not None:
        service.resilience.CopyFrom(person)
    conf.services.add(id=CIVIL, grpc_service="kz.gov.zags.v1.Births", servers=list(addresses)[:1])
    return conf


ViewOf = Callable[[globalconf_pb2.GlobalConf], GlobalConfView]


@pytest.fixture
def view_of(signer: tuple[CertificateAuthority, IssuedKey]) -> ViewOf:
    ca, key = signer

    def sign_and_verify(conf: globalconf_pb2.GlobalConf) -> GlobalConfView:
        raw = sign_global_conf(conf, key.signer(), certificate_der(key.certificate))
        return verify_global_conf(raw, [ca.certificate])

    return sign_and_verify


ADDRESSES = {SS1: "127.0.0.1:1", SS2: "127.0.0.1:2"}


def _guard(view: GlobalConfView, clock: ManualClock, **kwargs: object) -> ExchangeGuard:
    async def no_wait(seconds: float) -> None:
        clock.advance(seconds)

    return ExchangeGuard(view, clock=clock, sleep=no_wait, rng=random.Random(5), **kwargs)  # type: ignore[arg-type]


# --- settings from the global configuration --------------------------------------------


def test_defaults_are_counter_tight(view_of: ViewOf) -> None:
    view = view_of(_conf(1, ADDRESSES))
    s = service_settings(view.service(PERSON), view.servers)
    assert s.default_deadline == 5.0
    b = s.breaker
    assert (b.window, b.window_size, b.minimum_calls) == (WindowKind.COUNT, 20, 10)
    assert (b.failure_rate_threshold, b.slow_call_rate_threshold, b.slow_call_s) == (0.5, 0.8, 2.0)
    assert (b.open_s, b.half_open_probes) == (5.0, 2)
    assert (s.bulkhead.max_in_flight, s.bulkhead.max_queue) == (64, 16)
    assert (s.retry.max_attempts, s.throttle.max_tokens, s.throttle.token_ratio) == (3, 10, 0.1)
    assert s.endpoints == (Endpoint(SS1, "127.0.0.1:1"), Endpoint(SS2, "127.0.0.1:2"))


def test_published_settings_are_used_and_capped(view_of: ViewOf) -> None:
    person = globalconf_pb2.BreakerSettings(
        window=globalconf_pb2.BREAKER_WINDOW_TIME,
        window_seconds=30,
        minimum_calls=4,
        open_ms=1500,
        retry_max_attempts=9,
        failure_codes=["NOT_FOUND"],
        max_in_flight=3,
    )
    view = view_of(_conf(1, ADDRESSES, person=person, deadline_ms=800))
    s = service_settings(view.service(PERSON), view.servers)
    assert s.breaker.window is WindowKind.TIME and s.breaker.window_seconds == 30
    assert s.breaker.open_s == 1.5 and s.breaker.minimum_calls == 4
    assert s.breaker.slow_call_s == 0.8  # capped at the service's deadline
    assert s.retry.max_attempts == 5  # A6: a larger value is the client's maximum
    assert s.outcomes.failure_codes == frozenset({"NOT_FOUND"})
    assert s.default_deadline == 0.8 and s.bulkhead.max_in_flight == 3


@pytest.mark.parametrize(
    "bad",
    [
        globalconf_pb2.BreakerSettings(failure_rate_threshold=1.5),
        globalconf_pb2.BreakerSettings(minimum_calls=50),
        globalconf_pb2.BreakerSettings(failure_codes=["BOGUS"]),
        globalconf_pb2.BreakerSettings(max_ejected_fraction=float("nan")),
        globalconf_pb2.BreakerSettings(retry_initial_backoff_ms=5000, retry_max_backoff_ms=10),
    ],
)
def test_bad_published_settings_refused_and_nothing_changes(
    view_of: ViewOf, bad: globalconf_pb2.BreakerSettings
) -> None:
    clock = ManualClock()
    guard = _guard(view_of(_conf(1, ADDRESSES)), clock)
    before = guard.service(PERSON)
    with pytest.raises(ConfigInvalid, match=PERSON):
        guard.update(view_of(_conf(2, ADDRESSES, person=bad)))
    assert guard.service(PERSON) is before
    assert guard.service(PERSON).settings.breaker.failure_rate_threshold == 0.5


# --- the exchange path --------------------------------------------------------------------


class FakeRegistry:
    """The send function's far end: answers per endpoint, as the test decides."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.calls: list[tuple[str, int, float]] = []
        self.fail_with: dict[str, BaseException] = {}
        self.takes = 0.01

    async def send(self, endpoint: Endpoint, attempt: int, time_left: float) -> str:
        self.calls.append((endpoint.server_id, attempt, time_left))
        self.clock.advance(self.takes)
        error = self.fail_with.get(endpoint.server_id) or self.fail_with.get("*")
        if error is not None:
            raise error
        return f"answer from {endpoint.server_id}"


def test_deadline_is_always_set_and_propagated(view_of: ViewOf) -> None:
    clock = ManualClock()
    guard = _guard(view_of(_conf(1, ADDRESSES)), clock)
    registry = FakeRegistry(clock)
    asyncio.run(guard.run(PERSON, registry.send, idempotent=True))
    asyncio.run(guard.run(PERSON, registry.send, idempotent=True, time_left=1.25))
    assert [call[2] for call in registry.calls] == [5.0, 1.25]
    with pytest.raises(DeadlineExceeded):
        asyncio.run(guard.run(PERSON, registry.send, idempotent=True, time_left=0))
    with pytest.raises(InvalidRequest):
        asyncio.run(guard.run(PERSON, registry.send, idempotent=True, time_left=float("nan")))
    with pytest.raises(UnknownService):
        asyncio.run(guard.run("KZ/GOV/040340123459/nope/x/v1", registry.send, idempotent=True))
    assert len(registry.calls) == 2


def test_failing_registry_fails_alone_and_fast(view_of: ViewOf) -> None:
    """The IIN registry fails: its breaker opens and refuses without calling; ЗАГС is untouched."""
    clock = ManualClock()
    guard = _guard(view_of(_conf(1, ADDRESSES)), clock)
    registry = FakeRegistry(clock)

    async def exchanges() -> None:
        registry.fail_with[SS1] = registry.fail_with[SS2] = ServiceUnavailable("ГБД ФЛ is down")
        for _ in range(10):
            with pytest.raises(ServiceUnavailable):
                await guard.run(PERSON, registry.send, idempotent=False)
        assert guard.service(PERSON).breaker.state is BreakerState.OPEN
        sent = len(registry.calls)
        with pytest.raises(ServiceUnavailable) as refused:
            await guard.run(PERSON, registry.send, idempotent=True)
        assert len(registry.calls) == sent  # refused at once, the registry is not called
        assert refused.value.retry_after == pytest.approx(5.0, abs=0.1)
        del registry.fail_with[SS1]
        assert (await guard.run(CIVIL, registry.send, idempotent=True)).startswith("answer")
        registry.fail_with.clear()
        clock.advance(5)
        for _ in range(2):  # the half-open probes
            await guard.run(PERSON, registry.send, idempotent=True)
        assert guard.service(PERSON).breaker.state is BreakerState.CLOSED

    asyncio.run(exchanges())


def test_answers_do_not_open_the_breaker(view_of: ViewOf) -> None:
    clock = ManualClock()
    guard = _guard(view_of(_conf(1, ADDRESSES)), clock)
    registry = FakeRegistry(clock)
    registry.fail_with["*"] = NotFound("no such person")

    async def exchanges() -> None:
        for _ in range(50):
            with pytest.raises(NotFound):
                await guard.run(PERSON, registry.send, idempotent=True)

    asyncio.run(exchanges())
    assert guard.service(PERSON).breaker.state is BreakerState.CLOSED
    assert len(registry.calls) == 50  # and never retried


def test_bulkhead_full_refuses_at_once(view_of: ViewOf) -> None:
    clock = ManualClock()
    person = globalconf_pb2.BreakerSettings(max_in_flight=2, max_queue=1)
    guard = _guard(view_of(_conf(1, ADDRESSES, person=person)), clock)
    gate = asyncio.Event()

    async def hung(endpoint: Endpoint, attempt: int, time_left: float) -> str:
        await gate.wait()
        return "late"

    async def exchanges() -> None:
        tasks = [asyncio.create_task(guard.run(PERSON, hung, idempotent=True)) for _ in range(3)]
        await asyncio.sleep(0)
        with pytest.raises(ServiceUnavailable, match="refused at once"):
            await guard.run(PERSON, hung, idempotent=True)
        row = guard.service(PERSON).status()
        assert (row.bulkhead.in_flight, row.bulkhead.queued, row.bulkhead.shed) == (2, 1, 1)
        gate.set()
        assert await asyncio.gather(*tasks) == ["late"] * 3

    asyncio.run(exchanges())


def test_idempotent_reads_retry_non_idempotent_never(view_of: ViewOf) -> None:
    clock = ManualClock()
    guard = _guard(view_of(_conf(1, {SS1: "127.0.0.1:1"})), clock)
    registry = FakeRegistry(clock)
    processed_then_failed = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "reset"
    )
    registry.fail_with[SS1] = processed_then_failed
    with pytest.raises(grpc.aio.AioRpcError):
        asyncio.run(guard.run(PERSON, registry.send, idempotent=False))
    assert [c[1] for c in registry.calls] == [1]
    registry.calls.clear()
    with pytest.raises(grpc.aio.AioRpcError):
        asyncio.run(guard.run(PERSON, registry.send, idempotent=True))
    assert [c[1] for c in registry.calls] == [1, 2, 3]
    assert guard.service(PERSON).stats.retries == 2


# --- high availability over real provider servers -----------------------------------------


@asynccontextmanager
async def _echo_server(port: int = 0) -> AsyncIterator[tuple[grpc.aio.Server, int]]:
    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Echo", {"Call": grpc.unary_unary_rpc_method_handler(echo)}
            ),
        )
    )
    add_health_and_reflection(server, ["test.Echo"])
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield server, bound
    finally:
        await server.stop(None)


def _own_channel(endpoint: Endpoint) -> grpc.aio.Channel:
    # A local subchannel pool: a fresh channel gets a fresh connection instead of
    # sharing the back-off of another channel to the same address.
    return grpc.aio.insecure_channel(
        endpoint.address, options=(("grpc.use_local_subchannel_pool", 1),)
    )


def test_losing_one_provider_server_is_invisible(view_of: ViewOf) -> None:
    """Two real provider servers; one stops. Every exchange still succeeds, non-idempotent
    ones included (nothing reached the stopped one), and the stopped one is ejected, then
    returns after a health check once it is back."""

    async def scenario() -> None:
        clock = ManualClock()
        channels: dict[str, grpc.aio.Channel] = {}
        async with AsyncExitStack() as stack:
            _, port1 = await stack.enter_async_context(_echo_server())
            server2, port2 = await stack.enter_async_context(_echo_server())
            addresses = {SS1: f"127.0.0.1:{port1}", SS2: f"127.0.0.1:{port2}"}
            guard = _guard(
                view_of(_conf(1, addresses)),
                clock,
                channel_factory=_own_channel,
            )
            seen: list[str] = []

            async def send(endpoint: Endpoint, attempt: int, time_left: float) -> bytes:
                channel = channels.get(endpoint.address)
                if channel is None:
                    channel = channels[endpoint.address] = _own_channel(endpoint)
                try:
                    answer: bytes = await channel.unary_unary("/test.Echo/Call")(
                        b"iin", timeout=time_left
                    )
                except grpc.aio.AioRpcError:
                    # As the security server will: a broken connection is rebuilt, not
                    # left in reconnect back-off.
                    await channels.pop(endpoint.address).close()
                    raise
                seen.append(endpoint.server_id)
                return answer

            await guard.check_health()
            for _ in range(20):
                assert await guard.run(PERSON, send, idempotent=False) == b"iin"
            assert set(seen) == {SS1, SS2}  # spread over both

            await server2.stop(None)
            seen.clear()
            for _ in range(40):
                assert await guard.run(PERSON, send, idempotent=False) == b"iin"
            assert set(seen) == {SS1}
            row = guard.service(PERSON).status()
            assert row.breaker.state is BreakerState.CLOSED
            assert row.breaker.failure_rate == 0  # failovers are invisible to the breaker
            assert 1 <= row.failovers <= 5
            health = {e.server_id: e.health for e in row.endpoints}
            assert health[SS2] is EndpointHealth.EJECTED

            await stack.enter_async_context(_echo_server(port2))  # back on its port
            clock.advance(60)
            await guard.check_health()
            health = {e.server_id: e.health for e in guard.service(PERSON).status().endpoints}
            assert health[SS2] is EndpointHealth.HEALTHY
            seen.clear()
            for _ in range(20):
                await guard.run(PERSON, send, idempotent=True)
            assert SS2 in seen
            await guard.stop()
            for channel in channels.values():
                await channel.close()

    asyncio.run(scenario())


# --- configuration changes, status and metrics ---------------------------------------------


def test_conf_change_keeps_state_of_unchanged_settings(view_of: ViewOf) -> None:
    clock = ManualClock()
    guard = _guard(view_of(_conf(1, ADDRESSES)), clock)
    registry = FakeRegistry(clock)
    registry.fail_with["*"] = ServiceUnavailable("down")

    async def fail(n: int) -> None:
        for _ in range(n):
            with pytest.raises(ServiceUnavailable):
                await guard.run(PERSON, registry.send, idempotent=False)

    asyncio.run(fail(10))
    breaker = guard.service(PERSON).breaker
    assert breaker.state is BreakerState.OPEN
    guard.update(view_of(_conf(2, {**ADDRESSES, "KZ/GOV/040340123459/ss3": "127.0.0.1:3"})))
    assert guard.service(PERSON).breaker is breaker  # same settings: state kept
    assert len(guard.service(PERSON).endpoints.endpoints) == 3
    changed = globalconf_pb2.BreakerSettings(open_ms=1000)
    guard.update(view_of(_conf(3, ADDRESSES, person=changed)))
    assert guard.service(PERSON).breaker.state is BreakerState.CLOSED  # new settings: fresh
    conf = _conf(4, ADDRESSES)
    del conf.services[1]
    guard.update(view_of(conf))
    with pytest.raises(UnknownService):
        guard.service(CIVIL)


def test_status_table_and_metrics(view_of: ViewOf) -> None:
    clock = ManualClock()
    metrics = CollectorRegistry()
    changes: list[tuple[str, BreakerState]] = []
    guard = _guard(
        view_of(_conf(1, ADDRESSES)),
        clock,
        metrics=metrics,
        breaker_listeners=(lambda b, _old, new: changes.append((b.name, new)),),
    )
    registry = FakeRegistry(clock)
    registry.fail_with["*"] = ServiceUnavailable("down")

    async def fail(n: int) -> None:
        for _ in range(n):
            with pytest.raises(ServiceUnavailable):
                await guard.run(PERSON, registry.send, idempotent=False)

    asyncio.run(fail(11))
    assert changes == [(PERSON, BreakerState.OPEN)]
    labels = {"service": PERSON}
    assert metrics.get_sample_value("govbus_breaker_state", labels) == 2
    assert metrics.get_sample_value("govbus_breaker_rejections_total", labels) == 1
    assert (
        metrics.get_sample_value(
            "govbus_breaker_transitions_total", {"service": PERSON, "state": "open"}
        )
        == 1
    )
    assert metrics.get_sample_value("govbus_breaker_state", {"service": CIVIL}) == 0
    text = generate_latest(metrics).decode()
    assert "govbus_provider_server_healthy" in text and "govbus_bulkhead_in_flight" in text
    # A second guard on its own registry does not clash with the first.
    ExchangeGuard(clock=clock, metrics=CollectorRegistry())

    console = Console(record=True, width=240)
    console.print(render_status(guard.snapshot()))
    console.print(render_shedding([guard.service(PERSON).bulkhead.snapshot()]))
    out = console.export_text()
    assert PERSON in out and "open" in out and SS1 in out and "healthy" in out
    rows = guard.snapshot()
    assert [r.service_id for r in rows] == sorted([PERSON, CIVIL])
    with pytest.raises(AttributeError):
        rows[0].service_id = "x"  # type: ignore[misc]


def test_service_without_servers_is_refused_once(view_of: ViewOf) -> None:
    clock = ManualClock()
    guard = _guard(view_of(_conf(1, {})), clock)
    registry = FakeRegistry(clock)
    with pytest.raises(ServiceUnavailable, match="no provider security server is published"):
        asyncio.run(guard.run(PERSON, registry.send, idempotent=True))
    assert registry.calls == [] and guard.service(PERSON).stats.retries == 0
    assert guard.service(PERSON).breaker.snapshot().calls == 0
