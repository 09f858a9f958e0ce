"""Sending one-time codes to citizens' phones.

`SmsGateway` is the one method the consent service needs from an SMS provider.
`OutboxSmsGateway` is the local implementation: it appends each message as a
JSON line to an outbox file, which the tests and the demo read instead of a
phone (`read_outbox`, `latest_code`). A real operator's gateway fits the same
Protocol. The outbox holds codes in clear by nature — it *is* the phone — so
it is written with owner-only permissions, and only for local runs: a real
deployment plugs in its operator's gateway.

Nothing here decides who gets a code or checks one.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from govbus.errors import ConfigInvalid, InvalidRequest, ServiceUnavailable

__all__ = [
    "OutboxMessage",
    "OutboxSmsGateway",
    "SmsGateway",
    "latest_code",
    "mask_phone",
    "normalise_phone",
    "read_outbox",
]

_PHONE = re.compile(r"\+[1-9][0-9]{7,14}")
_CODE = re.compile(r"\b([0-9]{6})\b")


def normalise_phone(text: str) -> str:
    """An E.164 number (`+77011234567`); spaces, dashes and brackets are dropped."""
    cleaned = re.sub(r"[\s\-()]", "", text or "")
    if not _PHONE.fullmatch(cleaned):
        raise InvalidRequest(f"phone number {text!r} must be in E.164 form, e.g. +77011234567")
    return cleaned


def mask_phone(phone: str) -> str:
    """For screens and artefacts: country code and last four digits only."""
    return phone[:2] + "*" * (len(phone) - 6) + phone[-4:]


class SmsGateway(Protocol):
    async def send(self, phone: str, text: str, reference: str) -> None:
        """Deliver `text` to `phone`; `reference` ties it to a challenge. Raise
        `ServiceUnavailable` when the message cannot be handed over."""
        ...


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    to: str
    text: str
    reference: str
    sent_at_ms: int

    @property
    def code(self) -> str | None:
        found = _CODE.search(self.text)
        return found.group(1) if found else None


class OutboxSmsGateway:
    """Writes each message as one JSON line to `path` (created 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _append(self, line: bytes) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    async def send(self, phone: str, text: str, reference: str) -> None:
        line = json.dumps(
            {
                "to": phone,
                "text": text,
                "reference": reference,
                "sent_at_ms": int(time.time() * 1000),
            },
            ensure_ascii=False,
        )
        try:
            await asyncio.to_thread(self._append, line.encode() + b"\n")
        except OSError as exc:
            raise ServiceUnavailable(f"SMS outbox {self.path} not writable: {exc}") from None


def read_outbox(path: Path) -> list[OutboxMessage]:
    """Every message in an outbox, oldest first (an absent outbox is empty)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    messages = []
    for line in lines:
        if line.strip():
            data = json.loads(line)
            messages.append(
                OutboxMessage(data["to"], data["text"], data["reference"], data["sent_at_ms"])
            )
    return messages


def latest_code(path: Path, reference: str) -> str:
    """The code of the newest message sent for `reference` (a challenge id)."""
    for message in reversed(read_outbox(path)):
        if message.reference == reference and message.code:
            return message.code
    raise ConfigInvalid(f"no code for {reference} in SMS outbox {path}")
