"""Run an adapter inside a test: a real gRPC server on a loopback port, in a thread.

`RunningAdapter` starts an `AdapterServer` on its own event loop in a background
thread, so ordinary synchronous tests (and agency developers' own tests) can call it
with a plain `grpc.Channel`. `run_agency(adapter, db_path)` does the same for an
`AgencyAdapter` and its store. Calls go over real HTTP/2 on 127.0.0.1, through the
very wrapper a deployed adapter uses.

This module must never bind a non-loopback address.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from adapters.sdk.agency import AgencyAdapter, load
from adapters.sdk.server import AdapterServer, Servicers

__all__ = ["RunningAdapter", "run_agency"]


class RunningAdapter:
    """An `AdapterServer` served from a background thread (context manager)."""

    def __init__(self, servicers: Servicers, **options: Any) -> None:
        options.setdefault("host", "127.0.0.1")
        self.server = AdapterServer(servicers, **options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._channels: list[grpc.Channel] = []

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def target(self) -> str:
        return self.server.target

    def start(self) -> RunningAdapter:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(30)
        return self

    def channel(self) -> grpc.Channel:
        """A new channel to the adapter; closed when the adapter stops."""
        channel = grpc.insecure_channel(self.target)
        self._channels.append(channel)
        return channel

    def stop(self, grace: float = 1.0) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.server.stop(grace), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
        self._loop.close()

    def __enter__(self) -> RunningAdapter:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def run_agency(adapter: AgencyAdapter | str, db_path: Path, **options: Any) -> RunningAdapter:
    """An agency adapter on its store, ready to `start()` (or use as a context manager)."""
    agency = load(adapter) if isinstance(adapter, str) else adapter
    store = agency.open_store(db_path)
    servicer = agency.make_servicer(store)

    async def close_store() -> None:
        store.close()

    options.setdefault("on_stop", [close_store])
    return RunningAdapter([(agency.add_servicer, servicer)], **options)
