"""Replay guard: a signed request is accepted once.

A request is identified by (client, request id, attempt) — all inside the
signed header. Any message older than the freshness window is refused as stale
before it gets here, so the guard only remembers ids for that window; memory is
bounded by the request rate times the window. Pure: time comes in as an
argument.
"""

from __future__ import annotations

from collections import deque

from govbus.errors import ReplayDetected

__all__ = ["ReplayGuard"]


class ReplayGuard:
    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._seen: set[tuple[str, str, int]] = set()
        self._order: deque[tuple[int, tuple[str, str, int]]] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_remember(self, client: str, request_id: str, attempt: int, now_ms: int) -> None:
        """Raise `ReplayDetected` if seen within the window; otherwise remember it."""
        self._expire(now_ms)
        key = (client, request_id, attempt)
        if key in self._seen:
            raise ReplayDetected(
                f"request {request_id} from {client} (attempt {attempt}) was already accepted; "
                "a new request needs a new request id"
            )
        self._seen.add(key)
        # Keep ids for two windows: a message may arrive up to one window early
        # (sender clock ahead) and be replayed up to one window late.
        self._order.append((now_ms + 2 * self.window_ms, key))

    def _expire(self, now_ms: int) -> None:
        order = self._order
        while order and order[0][0] <= now_ms:
            self._seen.discard(order.popleft()[1])
