"""What the end of a call says about the registry behind it.

A registry that answers — even "no such person" (`NOT_FOUND`), "no consent"
or "access denied" — is working; only a registry that cannot answer (down,
hung, broken) is failing. `OutcomePolicy` turns the way a call ended into one
of three outcomes: `SUCCESS` (it answered), `FAILURE` (it did not), `IGNORED`
(the call says nothing about the registry: the caller gave up, or our own side
failed). Which codes count as failures is configurable per service.

Also here: which failures may be retried, when a call may fail over to another
provider security server (only when nothing of it was processed), and the
`grpc-retry-pushback-ms` convention (gRPC proposal A6).

Pure functions over values; this module must never perform I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import grpc

from govbus.errors import (
    STATUS_DETAILS_KEY,
    ConfigInvalid,
    GovbusError,
    Origin,
    ServiceUnavailable,
    error_class,
)

__all__ = [
    "DEFAULT_FAILURE_CODES",
    "GUARD_KEY",
    "NO_RETRY",
    "PUSHBACK_KEY",
    "UNPROCESSED_KEY",
    "Outcome",
    "OutcomePolicy",
    "failover_allowed",
    "parse_pushback",
    "pushback_metadata",
    "pushback_of",
    "unprocessed",
]


class Outcome(enum.Enum):
    SUCCESS = "success"  # the registry answered (an answer may be a refusal)
    FAILURE = "failure"  # the registry could not answer
    IGNORED = "ignored"  # says nothing about the registry (cancelled, our own fault)


#: Registry failures by default: govbus codes and gRPC status names.
DEFAULT_FAILURE_CODES: Final = frozenset(
    {
        "SERVICE_UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "INTERNAL",
        "UNAVAILABLE",
        "UNKNOWN",
        "DATA_LOSS",
    }
)

_STATUS_NAMES: Final = frozenset(code.name for code in grpc.StatusCode) - {"OK"}
#: Refusals that answer the question "may this client have this data": never a
#: registry failure, whatever gRPC status carries them (a stale consent feed is
#: UNAVAILABLE, yet the registry itself is fine).
_REFUSAL_ANSWERS: Final = frozenset(
    {
        "ACCESS_DENIED",
        "CONSENT_REQUIRED",
        "CONSENT_REVOKED",
        "CONSENT_EXPIRED",
        "CONSENT_NOT_YET_VALID",
        "CONSENT_SCOPE",
        "CONSENT_INVALID",
        "CONSENT_STATUS_STALE",
        "LEGAL_BASIS_INVALID",
    }
)
_LOCAL_ORIGINS: Final = frozenset({Origin.CLIENT, Origin.CONSUMER_SS})

#: Trailing metadata key of gRPC server pushback (A6): milliseconds, or negative = don't retry.
PUSHBACK_KEY: Final = "grpc-retry-pushback-ms"
#: `ErrorInfo` metadata key a security server sets when it refused a call before
#: processing any of it (load shed, draining): safe to send to another server.
UNPROCESSED_KEY: Final = "unprocessed"

#: `ErrorInfo` metadata key naming the guard that refused a call ("circuit_breaker", "bulkhead").
GUARD_KEY: Final = "guard"

#: `pushback_of` result meaning "the server asked not to retry".
NO_RETRY: Final = -1.0

# Phrases gRPC-core puts in UNAVAILABLE details when no connection could be made,
# i.e. the request never left this process.
_NOT_CONNECTED: Final = ("failed to connect to all addresses", "dns resolution failed")


def _status_of(error: BaseException) -> grpc.StatusCode | None:
    if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
        code = error.code()
        return code if isinstance(code, grpc.StatusCode) else None
    return None


def _has_govbus_details(error: grpc.RpcError) -> bool:
    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    return any(key == STATUS_DETAILS_KEY for key, _ in trailing or ())


@dataclass(frozen=True, slots=True)
class OutcomePolicy:
    """Which ends of a call count as registry failures, and which may be retried."""

    failure_codes: frozenset[str] = DEFAULT_FAILURE_CODES
    #: Failures a retry may cure (A6's `retryableStatusCodes`): the registry or
    #: its server was momentarily unreachable. A deadline is never retried: it is
    #: the caller's whole budget.
    retryable_codes: frozenset[str] = frozenset({"SERVICE_UNAVAILABLE", "UNAVAILABLE"})

    @classmethod
    def from_codes(cls, codes: Iterable[str]) -> OutcomePolicy:
        """A policy counting exactly `codes` as failures (empty = the defaults).

        Raises `CONFIG_INVALID` for a name that is neither a govbus code nor a
        gRPC status name.
        """
        wanted = frozenset(c.strip().upper() for c in codes)
        if not wanted:
            return cls()
        unknown = sorted(c for c in wanted if c not in _STATUS_NAMES and error_class(c) is None)
        if unknown:
            raise ConfigInvalid(
                f"failure_codes {unknown} are neither govbus error codes nor gRPC status names"
            )
        return cls(failure_codes=wanted)

    def classify(self, error: BaseException | None) -> Outcome:
        """The outcome of a call that returned (`None`) or raised `error`."""
        if error is None:
            return Outcome.SUCCESS
        if isinstance(error, GovbusError):
            return self._classify_govbus(error)
        status = _status_of(error)
        if status is not None:
            if status is grpc.StatusCode.CANCELLED:
                return Outcome.IGNORED
            return Outcome.FAILURE if status.name in self.failure_codes else Outcome.SUCCESS
        if isinstance(error, OSError | TimeoutError):
            return Outcome.FAILURE  # could not reach it, or it did not answer in time
        # Cancellation, and bugs of our own, say nothing about the registry.
        return Outcome.IGNORED

    def _classify_govbus(self, error: GovbusError) -> Outcome:
        if error.code in self.failure_codes:
            return Outcome.FAILURE
        if error.origin in _LOCAL_ORIGINS:
            return Outcome.IGNORED  # our side (or the caller) failed, not the registry
        if error.code in _REFUSAL_ANSWERS:
            return Outcome.SUCCESS
        if error.status.name in self.failure_codes:
            return Outcome.FAILURE
        return Outcome.SUCCESS

    def retryable(self, error: BaseException) -> bool:
        """Whether a retry of an idempotent read may cure this failure."""
        if isinstance(error, GovbusError):
            refused_here = GUARD_KEY in error.metadata and error.origin is not Origin.PROVIDER_SS
            if error.origin in _LOCAL_ORIGINS or refused_here:
                # Our own refusals (breaker, bulkhead, deadline) are final: retrying
                # would only ask the same breaker again.
                return False
            return error.code in self.retryable_codes or error.status.name in self.retryable_codes
        status = _status_of(error)
        if status is not None:
            return status.name in self.retryable_codes
        return isinstance(error, OSError)

    def throttle_failure(self, error: BaseException) -> bool:
        """Whether the failure takes a retry token (A6: retryable codes and "don't retry")."""
        return self.retryable(error) or pushback_of(error) == NO_RETRY


def parse_pushback(value: str | bytes | None) -> float | None:
    """A6 pushback: seconds to wait, `NO_RETRY` (negative or unparseable), None when absent."""
    if value is None:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    text = text.strip()
    # A6: an ASCII signed 32-bit integer with no unnecessary leading zeros.
    body = text.removeprefix("-")
    if not body.isdigit() or not body.isascii() or (len(body) > 1 and body[0] == "0"):
        return NO_RETRY
    millis = int(text)
    if millis < 0 or millis > 2**31 - 1:
        return NO_RETRY
    return millis / 1000.0


def pushback_of(error: BaseException) -> float | None:
    """The server's pushback carried by `error`: seconds, `NO_RETRY`, or None.

    A raw gRPC error carries it as `grpc-retry-pushback-ms` trailing metadata; a
    govbus error carries a wish to be retried later as `RetryInfo`
    (`retry_after`), read as a pushback of that length.
    """
    if isinstance(error, grpc.RpcError) and hasattr(error, "trailing_metadata"):
        for key, value in error.trailing_metadata() or ():
            if key == PUSHBACK_KEY:
                return parse_pushback(value)
        return None
    if isinstance(error, GovbusError) and error.retry_after is not None:
        return max(0.0, error.retry_after)
    return None


def pushback_metadata(retry_after: float | None) -> tuple[tuple[str, str], ...]:
    """Trailing metadata asking the caller to wait `retry_after` s (None = not to retry)."""
    millis = -1 if retry_after is None else max(0, round(retry_after * 1000))
    return ((PUSHBACK_KEY, str(millis)),)


def unprocessed(error: GovbusError) -> GovbusError:
    """Mark `error` as a refusal before any processing (safe to fail over)."""
    error.metadata[UNPROCESSED_KEY] = "true"
    return error


def failover_allowed(error: BaseException) -> bool:
    """True only when nothing of the request was processed by the server that failed.

    That is: the connection could not be made (gRPC's "failed to connect to all
    addresses", a refused socket), or a security server refused the call up front
    and said so (`ErrorInfo` metadata `unprocessed=true`, e.g. load shedding).
    An `UNAVAILABLE` that came after the request was sent may have been processed
    and is not failed over (a non-idempotent write must never run twice).
    """
    if isinstance(error, GovbusError):
        return isinstance(error, ServiceUnavailable) and (
            error.metadata.get(UNPROCESSED_KEY) == "true"
        )
    if isinstance(error, grpc.RpcError):
        if _status_of(error) is not grpc.StatusCode.UNAVAILABLE or _has_govbus_details(error):
            return False
        details = (error.details() if hasattr(error, "details") else "") or ""
        lowered = details.lower()
        return any(phrase in lowered for phrase in _NOT_CONNECTED)
    return isinstance(error, ConnectionRefusedError)
