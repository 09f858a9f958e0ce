"""The error vocabulary of govbus, defined once.

Every failure on the bus is a `GovbusError` subclass with a stable code, an
origin (who is at fault), a gRPC status and a message saying what was wrong and
what to do. On the wire it travels as a gRPC status whose details carry
`google.rpc.ErrorInfo{reason: code, domain: "govbus", metadata: {"origin": ...}}`
and, where retrying helps, `google.rpc.RetryInfo`; `from_rpc_error` turns a
failed call back into the typed error.

This module must never import another govbus module: everything depends on it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import ClassVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "DOMAIN",
    "STATUS_DETAILS_KEY",
    "AccessDenied",
    "AlreadyExists",
    "AuditLogCorrupt",
    "AuditLogUnavailable",
    "CertificateExpired",
    "CertificateInvalid",
    "CertificateRevoked",
    "ConfigInvalid",
    "ConsentExpired",
    "ConsentInvalid",
    "ConsentNotYetValid",
    "ConsentRequired",
    "ConsentRevoked",
    "ConsentScope",
    "ConsentStatusStale",
    "DeadlineExceeded",
    "FailedPrecondition",
    "GlobalConfExpired",
    "GlobalConfInvalid",
    "GovbusError",
    "Internal",
    "InvalidIdentifier",
    "InvalidRequest",
    "KeyInvalid",
    "LegalBasisInvalid",
    "NotFound",
    "Origin",
    "OtpInvalid",
    "OtpLocked",
    "PassphraseInvalid",
    "PayloadTooLarge",
    "ProofInvalid",
    "RateLimited",
    "ReplayDetected",
    "ServiceUnavailable",
    "SignatureInvalid",
    "StaleMessage",
    "Unauthenticated",
    "UnknownMethod",
    "UnknownService",
    "error_class",
    "from_rpc_error",
    "from_status_details",
]

DOMAIN = "govbus"
STATUS_DETAILS_KEY = "grpc-status-details-bin"


class Origin(enum.Enum):
    """Who is at fault; names match `govbus.v1.Origin`."""

    CLIENT = "CLIENT"
    CONSUMER_SS = "CONSUMER_SS"
    PROVIDER_SS = "PROVIDER_SS"
    PROVIDER = "PROVIDER"
    REGISTRY = "REGISTRY"
    CONSENT_SERVICE = "CONSENT_SERVICE"


_BY_CODE: dict[str, type[GovbusError]] = {}


class GovbusError(Exception):
    """Base of every govbus error. Subclasses fix `code`, `status` and `origin`."""

    code: ClassVar[str] = "INTERNAL"
    status: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    default_origin: ClassVar[Origin] = Origin.CONSUMER_SS
    #: Whether a retry can succeed (sets RetryInfo when `retry_after` is given).
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        origin: Origin | None = None,
        retry_after: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.origin = origin or self.default_origin
        self.retry_after = retry_after
        self.metadata: dict[str, str] = dict(metadata or {})

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.code in _BY_CODE and _BY_CODE[cls.code] is not cls:
            raise TypeError(f"error code {cls.code} defined twice")
        _BY_CODE[cls.code] = cls

    def __str__(self) -> str:
        return f"{self.code} ({self.origin.value}): {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, origin={self.origin.value})"

    def with_origin(self, origin: Origin) -> GovbusError:
        """A copy of this error blamed on `origin` (e.g. when a hop re-raises)."""
        return type(self)(
            self.message, origin=origin, retry_after=self.retry_after, metadata=self.metadata
        )

    # --- wire form -----------------------------------------------------------------

    def to_status_proto(self) -> status_pb2.Status:
        info = error_details_pb2.ErrorInfo(reason=self.code, domain=DOMAIN)
        info.metadata["origin"] = self.origin.value
        for key, value in self.metadata.items():
            info.metadata[key] = value
        details = [_pack(info)]
        if self.retry_after is not None:
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(max(0, int(self.retry_after * 1e9)))
            details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
        return status_pb2.Status(code=self.status.value[0], message=str(self), details=details)

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return ((STATUS_DETAILS_KEY, self.to_status_proto().SerializeToString()),)

    async def abort(self, context: grpc.aio.ServicerContext) -> None:
        """End an aio call with this error (raises, as `context.abort` does)."""
        await context.abort(self.status, str(self), self.trailing_metadata())

    def abort_sync(self, context: grpc.ServicerContext) -> None:
        context.abort(self.status, str(self))


def _pack(message: error_details_pb2.ErrorInfo | error_details_pb2.RetryInfo) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def error_class(code: str) -> type[GovbusError] | None:
    """The error class for a stable code, or None if the code is unknown."""
    return _BY_CODE.get(code)


def from_status_details(
    status: grpc.StatusCode, message: str, details: bytes | None
) -> GovbusError:
    """Rebuild the typed error from a gRPC status and its `grpc-status-details-bin`."""
    if details:
        parsed = status_pb2.Status()
        try:
            parsed.ParseFromString(details)
        except Exception:  # noqa: BLE001 - any parse failure means "no usable details"
            parsed = status_pb2.Status()
        info = error_details_pb2.ErrorInfo()
        retry: float | None = None
        found = False
        for detail in parsed.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR) and detail.Unpack(info):
                found = info.domain == DOMAIN
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry_info = error_details_pb2.RetryInfo()
                detail.Unpack(retry_info)
                retry = retry_info.retry_delay.ToNanoseconds() / 1e9
        if found:
            cls = _BY_CODE.get(info.reason, Internal)
            meta = dict(info.metadata)
            origin_name = meta.pop("origin", "")
            origin = Origin.__members__.get(origin_name, cls.default_origin)
            text = parsed.message or message
            prefix = f"{info.reason} ({origin_name}): "
            text = text.removeprefix(prefix)
            return cls(text, origin=origin, retry_after=retry, metadata=meta)
    return _from_plain_status(status, message)


def _from_plain_status(status: grpc.StatusCode, message: str) -> GovbusError:
    """Map a status that carries no govbus details (a plain gRPC failure)."""
    text = message or status.name
    mapped = _PLAIN.get(status)
    if mapped is None:
        return Internal(f"{status.name}: {text}")
    cls, origin = mapped
    return cls(text, origin=origin)


def from_rpc_error(error: grpc.RpcError) -> GovbusError:
    """Turn a failed gRPC call (sync or aio) back into the typed govbus error."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else ""
    raw: bytes | None = None
    trailing: Sequence[tuple[str, str | bytes]] = (
        error.trailing_metadata() if hasattr(error, "trailing_metadata") else ()
    ) or ()
    for key, value in trailing:
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            raw = value
    return from_status_details(code, details or "", raw)


# ---------------------------------------------------------------------------------
# The vocabulary. Codes are stable: never rename one, only add.
# ---------------------------------------------------------------------------------

_S = grpc.StatusCode


class Internal(GovbusError):
    """An unexpected failure; the message says where."""


class InvalidIdentifier(GovbusError):
    code = "INVALID_IDENTIFIER"
    status = _S.INVALID_ARGUMENT
    default_origin = Origin.CLIENT


class InvalidRequest(GovbusError):
    code = "INVALID_REQUEST"
    status = _S.INVALID_ARGUMENT
    default_origin = Origin.CLIENT


class PayloadTooLarge(GovbusError):
    code = "PAYLOAD_TOO_LARGE"
    status = _S.RESOURCE_EXHAUSTED
    default_origin = Origin.CLIENT


class UnknownService(GovbusError):
    code = "UNKNOWN_SERVICE"
    status = _S.NOT_FOUND
    default_origin = Origin.CLIENT


class UnknownMethod(GovbusError):
    code = "UNKNOWN_METHOD"
    status = _S.UNIMPLEMENTED
    default_origin = Origin.CLIENT


class NotFound(GovbusError):
    """The provider answered: no such record. An answer, not a failure."""

    code = "NOT_FOUND"
    status = _S.NOT_FOUND
    default_origin = Origin.PROVIDER


class AlreadyExists(GovbusError):
    code = "ALREADY_EXISTS"
    status = _S.ALREADY_EXISTS
    default_origin = Origin.PROVIDER


class FailedPrecondition(GovbusError):
    """A business rule refused the request (e.g. registering a death twice)."""

    code = "FAILED_PRECONDITION"
    status = _S.FAILED_PRECONDITION
    default_origin = Origin.PROVIDER


class Unauthenticated(GovbusError):
    code = "UNAUTHENTICATED"
    status = _S.UNAUTHENTICATED
    default_origin = Origin.CLIENT


class AccessDenied(GovbusError):
    code = "ACCESS_DENIED"
    status = _S.PERMISSION_DENIED
    default_origin = Origin.CONSUMER_SS


class ConsentRequired(GovbusError):
    code = "CONSENT_REQUIRED"
    status = _S.PERMISSION_DENIED
    default_origin = Origin.PROVIDER_SS


class ConsentRevoked(GovbusError):
    code = "CONSENT_REVOKED"
    status = _S.PERMISSION_DENIED
    default_origin = Origin.PROVIDER_SS


class ConsentExpired(GovbusError):
    code = "CONSENT_EXPIRED"
    status = _S.PERMISSION_DENIED
    default_origin = Origin.PROVIDER_SS


class ConsentNotYetValid(GovbusError):
    code = "CONSENT_NOT_YET_VALID"
    status = _S.PERMISSION_DENIED
    default_origin = Origin.PROVIDER_SS


class ConsentScope(GovbusError):
    """The consent exists but does not cover this subject, grantee, service or purpose."""

    code = "CONSENT_SCOPE"
    status = _S.PERMISSION_DENIED
    default_origin = Origin.PROVIDER_SS


class ConsentInvalid(GovbusError):
    """The consent artefact is malformed or unknown."""

    code = "CONSENT_INVALID"
    status = _S.PERMISSION_DENIED
    default_origin = Origin.PROVIDER_SS


class ConsentStatusStale(GovbusError):
    """The provider's copy of the consent revocation feed is older than its bound and the
    service fails closed: no consent can be trusted until the feed catches up."""

    code = "CONSENT_STATUS_STALE"
    status = _S.UNAVAILABLE
    default_origin = Origin.PROVIDER_SS
    retryable = True


class LegalBasisInvalid(GovbusError):
    code = "LEGAL_BASIS_INVALID"
    status = _S.PERMISSION_DENIED
    default_origin = Origin.PROVIDER_SS


class SignatureInvalid(GovbusError):
    code = "SIGNATURE_INVALID"
    status = _S.UNAUTHENTICATED
    default_origin = Origin.PROVIDER_SS


class CertificateInvalid(GovbusError):
    code = "CERTIFICATE_INVALID"
    status = _S.UNAUTHENTICATED
    default_origin = Origin.PROVIDER_SS


class CertificateRevoked(GovbusError):
    code = "CERTIFICATE_REVOKED"
    status = _S.UNAUTHENTICATED
    default_origin = Origin.PROVIDER_SS


class CertificateExpired(GovbusError):
    code = "CERTIFICATE_EXPIRED"
    status = _S.UNAUTHENTICATED
    default_origin = Origin.PROVIDER_SS


class ReplayDetected(GovbusError):
    code = "REPLAY_DETECTED"
    status = _S.ALREADY_EXISTS
    default_origin = Origin.PROVIDER_SS


class StaleMessage(GovbusError):
    """The message's timestamp is outside the freshness window."""

    code = "STALE_MESSAGE"
    status = _S.INVALID_ARGUMENT
    default_origin = Origin.PROVIDER_SS


class DeadlineExceeded(GovbusError):
    code = "DEADLINE_EXCEEDED"
    status = _S.DEADLINE_EXCEEDED
    default_origin = Origin.PROVIDER
    retryable = True


class ServiceUnavailable(GovbusError):
    code = "SERVICE_UNAVAILABLE"
    status = _S.UNAVAILABLE
    default_origin = Origin.PROVIDER
    retryable = True


class RateLimited(GovbusError):
    code = "RATE_LIMITED"
    status = _S.RESOURCE_EXHAUSTED
    default_origin = Origin.PROVIDER_SS
    retryable = True


class GlobalConfExpired(GovbusError):
    code = "GLOBAL_CONF_EXPIRED"
    status = _S.UNAVAILABLE
    default_origin = Origin.CONSUMER_SS
    retryable = True


class GlobalConfInvalid(GovbusError):
    """A global configuration was refused (bad signature, older version, tampered)."""

    code = "GLOBAL_CONF_INVALID"
    status = _S.FAILED_PRECONDITION
    default_origin = Origin.REGISTRY


class ConfigInvalid(GovbusError):
    """A local configuration file or setting is wrong."""

    code = "CONFIG_INVALID"
    status = _S.FAILED_PRECONDITION
    default_origin = Origin.CLIENT


class KeyInvalid(GovbusError):
    """A key or certificate file is missing, corrupted or of the wrong kind."""

    code = "KEY_INVALID"
    status = _S.FAILED_PRECONDITION
    default_origin = Origin.CLIENT


class PassphraseInvalid(GovbusError):
    code = "PASSPHRASE_INVALID"
    status = _S.UNAUTHENTICATED
    default_origin = Origin.CLIENT


class AuditLogUnavailable(GovbusError):
    code = "AUDIT_LOG_UNAVAILABLE"
    status = _S.UNAVAILABLE
    default_origin = Origin.CONSUMER_SS
    retryable = True


class AuditLogCorrupt(GovbusError):
    """The stored log does not match its tree, checkpoint or records."""

    code = "AUDIT_LOG_CORRUPT"
    status = _S.DATA_LOSS
    default_origin = Origin.CONSUMER_SS


class ProofInvalid(GovbusError):
    """An inclusion or consistency proof, or a root, does not verify."""

    code = "PROOF_INVALID"
    status = _S.DATA_LOSS
    default_origin = Origin.CLIENT


class OtpInvalid(GovbusError):
    code = "OTP_INVALID"
    status = _S.PERMISSION_DENIED
    default_origin = Origin.CLIENT


class OtpLocked(GovbusError):
    """Too many wrong codes: the request is locked."""

    code = "OTP_LOCKED"
    status = _S.RESOURCE_EXHAUSTED
    default_origin = Origin.CLIENT


# How a gRPC status without govbus details reads in the vocabulary.
_PLAIN: dict[grpc.StatusCode, tuple[type[GovbusError], Origin | None]] = {
    _S.DEADLINE_EXCEEDED: (DeadlineExceeded, Origin.CLIENT),
    _S.UNAVAILABLE: (ServiceUnavailable, None),
    _S.UNIMPLEMENTED: (UnknownMethod, Origin.PROVIDER),
    _S.NOT_FOUND: (NotFound, None),
    _S.INVALID_ARGUMENT: (InvalidRequest, Origin.PROVIDER),
    _S.PERMISSION_DENIED: (AccessDenied, Origin.PROVIDER),
    _S.RESOURCE_EXHAUSTED: (RateLimited, Origin.PROVIDER),
    _S.UNAUTHENTICATED: (Unauthenticated, None),
    _S.ALREADY_EXISTS: (AlreadyExists, None),
    _S.FAILED_PRECONDITION: (FailedPrecondition, None),
}
