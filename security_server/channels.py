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
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)


class ChannelPool:
    """One channel per address; mTLS when credentials are given, else plaintext (loopback)."""

    def __init__(self, credentials: grpc.ChannelCredentials | None = None) -> None:
        self._credentials = credentials
        self._channels: dict[str, grpc.aio.Channel] = {}

    def get(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            if self._credentials is None:
                channel = grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
            else:
                channel = grpc.aio.secure_channel(
                    address, self._credentials, options=_CHANNEL_OPTIONS
                )
            self._channels[address] = channel
        return channel

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close()

    @staticmethod
    def mutual_tls(ca_pem: bytes, key_pem: bytes, cert_pem: bytes) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
        )
