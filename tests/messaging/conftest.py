"""Fixtures of the messaging tests: a real relay (Daphne, SQLite, in-memory channel layer) on
a free loopback port, and clients that connect to it over real WebSockets and HTTP."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from .messaging_support import Peer, open_peer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "relay"))
from daphne_nodes import (
    CAPTURE_APP,
    UNLIMITED_RATES,
    capture_settings,
    migrate,
    sqlite_env,
    start_daphne,
    stop,
    wait_up,
)


@dataclass
class Relay:
    url: str
    port: int
    database: Path
    log: Path


@pytest.fixture(scope="session")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    """One relay for the whole session (each test uses fresh identities)."""
    base = tmp_path_factory.mktemp("relay")
    database = base / "relay.sqlite3"
    env = sqlite_env(database, **UNLIMITED_RATES)
    migrate(env, timeout=120)
    log = base / "daphne.log"
    port, process = start_daphne(env, log)
    try:
        if not wait_up(process, port, 60):
            raise RuntimeError(f"the relay did not start: {log.read_text()[-3000:]}")
        yield Relay(f"http://127.0.0.1:{port}", port, database, log)
    finally:
        stop([process])


@pytest_asyncio.fixture
async def peers(relay: Relay, tmp_path: Path) -> AsyncIterator[list[Peer]]:
    """A list to put peers in; every peer opened through it is closed after the test."""
    opened: list[Peer] = []
    yield opened
    for peer in opened:
        await peer.close()


__all__ = ["Peer", "Relay", "open_peer"]


@pytest.fixture(scope="session")
def capturing_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Relay, Path]]:
    """A relay that records every HTTP body and WebSocket frame it receives or sends
    (capture_asgi.py), for the operator tests: ``(relay, capture file)``."""
    base = tmp_path_factory.mktemp("operator")
    database, capture = base / "relay.sqlite3", base / "capture.jsonl"
    env = sqlite_env(database, **capture_settings(capture))
    migrate(env, timeout=120)
    log = base / "daphne.log"
    port, process = start_daphne(env, log, CAPTURE_APP)
    try:
        assert wait_up(process, port, 60), log.read_text()
        yield Relay(f"http://127.0.0.1:{port}", port, database, log), capture
    finally:
        stop([process])
