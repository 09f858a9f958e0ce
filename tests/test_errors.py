"""The error vocabulary survives a real gRPC call in both directions."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from govbus import errors
from govbus.errors import GovbusError, Origin


def _all_error_classes() -> list[type[GovbusError]]:
    classes = {c for c in (getattr(errors, n) for n in errors.__all__) if isinstance(c, type)}
    return sorted(
        (c for c in classes if issubclass(c, GovbusError) and c is not GovbusError),
        key=lambda c: c.code,
    )


def test_codes_are_unique_and_upper_snake() -> None:
    classes = _all_error_classes()
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes))
    for code in codes:
        assert code == code.upper() and " " not in code
        assert errors.error_class(code) is not None


async def _serve_and_call(
    raised: GovbusError, *, plain: tuple[grpc.StatusCode, str] | None = None
) -> GovbusError:
    async def handler(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if plain is not None:
            await context.abort(plain[0], plain[1])
        await raised.abort(context)
        return b""

    generic = grpc.method_handlers_generic_handler(
        "test.Errors", {"Fail": grpc.unary_unary_rpc_method_handler(handler)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((generic,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/test.Errors/Fail")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(b"x", timeout=5)
            return errors.from_rpc_error(info.value)
    finally:
        await server.stop(None)


@pytest.mark.parametrize("cls", _all_error_classes(), ids=lambda c: c.code)
def test_every_error_round_trips_over_grpc(cls: type[GovbusError]) -> None:
    sent = cls("what went wrong; what to do", origin=Origin.PROVIDER_SS, metadata={"service": "s1"})
    got = asyncio.run(_serve_and_call(sent))
    assert type(got) is cls
    assert got.code == sent.code
    assert got.origin is Origin.PROVIDER_SS
    assert got.message == "what went wrong; what to do"
    assert got.metadata == {"service": "s1"}
    assert got.retry_after is None


def test_retry_info_travels() -> None:
    sent = errors.ServiceUnavailable("breaker open", origin=Origin.CONSUMER_SS, retry_after=2.5)
    got = asyncio.run(_serve_and_call(sent))
    assert isinstance(got, errors.ServiceUnavailable)
    assert got.retry_after == pytest.approx(2.5)
    assert got.status is grpc.StatusCode.UNAVAILABLE


def test_plain_grpc_failure_maps_to_vocabulary() -> None:
    got = asyncio.run(
        _serve_and_call(errors.Internal("unused"), plain=(grpc.StatusCode.UNAVAILABLE, "down"))
    )
    assert isinstance(got, errors.ServiceUnavailable)
    assert "down" in got.message


def test_garbage_details_do_not_crash() -> None:
    got = errors.from_status_details(grpc.StatusCode.INTERNAL, "boom", b"\xff\x00garbage")
    assert isinstance(got, errors.Internal)


def test_with_origin_keeps_everything_else() -> None:
    err = errors.ConsentRevoked("revoked at 12:00", retry_after=None, metadata={"consent": "c1"})
    moved = err.with_origin(Origin.CONSUMER_SS)
    assert moved.code == "CONSENT_REVOKED"
    assert moved.origin is Origin.CONSUMER_SS
    assert moved.metadata == {"consent": "c1"}
