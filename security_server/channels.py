"""gRPC channels a security server keeps open: to remote security servers over
mutual TLS, and to the local adapters it fronts.

Channels are created once per address and reused; HTTP/2 multiplexes every
exchange over them.
"""

from __future__ import annotations

from typing import Any

import grpc

from govbus.serving import DEFAULT_OPTIONS

__all__ = ["ChannelPool"]

_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    *DEFAULT_OPTIONS,
    ("grpc.enable_retries", 0),  # retries are the bus's decision, not the channel's
    # One connection per channel, not shared through gRPC's global subchannel pool:
    # a provider that restarts is reconnected by its own channel's short back-off.
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1_000),
    ("grpc.min_reconnect_backoff_ms", 200),
)


class ChannelPool:
    """One channel per address; mTLS when credentials are given, else plaintext (loopback)."""

    def __init__(self, credentials: grpc.ChannelCredentials | None = None) -> None:
        self._credentials = credentials
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._methods: dict[tuple[str, str, bool], Any] = {}

    def method(
        self,
        address: str,
        path: str,
        *,
        streaming: bool = False,
        request_serializer: Any = None,
        response_deserializer: Any = None,
    ) -> Any:
        """The (cached) multi-callable for `path` on the pooled channel to `address`."""
        key = (address, path, streaming)
        found = self._methods.get(key)
        if found is None:
            channel = self.get(address)
            make = channel.unary_stream if streaming else channel.unary_unary
            found = make(
                path,
                request_serializer=request_serializer,
                response_deserializer=response_deserializer,
            )
            if len(self._methods) > 10_000:
                self._methods.clear()
            self._methods[key] = found
        return found

    def get(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = self.fresh(address)
        return channel

    def fresh(self, address: str) -> grpc.aio.Channel:
        """A new channel the caller owns (and closes), outside the pool."""
        if self._credentials is None:
            return grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
        return grpc.aio.secure_channel(address, self._credentials, options=_CHANNEL_OPTIONS)

    async def close(self) -> None:
        self._methods.clear()
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close()

    @staticmethod
    def mutual_tls(ca_pem: bytes, key_pem: bytes, cert_pem: bytes) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
        )
