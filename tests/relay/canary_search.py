"""Searching what an operator holds for a canary: every table of the relay's SQLite database,
and the relay's capture of HTTP bodies and WebSocket frames (tests/messaging/capture_asgi.py).
Strings are also searched JSON-parsed and base64-decoded, as payload fields carry bytes."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path


def texts_of(value: object) -> Iterator[bytes]:
    """Every string and byte string in a value, and what base64 strings decode to."""
    if isinstance(value, bytes):
        yield value
        with contextlib.suppress(UnicodeDecodeError):
            yield from texts_of(value.decode("utf-8"))
    elif isinstance(value, str):
        yield value.encode("utf-8", "surrogatepass")
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict | list):
            yield from texts_of(parsed)
        for candidate in (value, value + "=" * (-len(value) % 4)):
            try:
                decoded = base64.b64decode(candidate, validate=True)
            except (binascii.Error, ValueError):
                try:
                    decoded = base64.urlsafe_b64decode(candidate)
                except (binascii.Error, ValueError):
                    continue
            yield decoded
            break
    elif isinstance(value, dict):
        for item in value.values():
            yield from texts_of(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from texts_of(item)


def found(needle: bytes, haystack: Iterator[bytes]) -> bool:
    return any(needle in blob for blob in haystack)


def database_values(path: Path) -> Iterator[object]:
    connection = sqlite3.connect(path)
    try:
        tables = [
            r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        for table in tables:
            for row in connection.execute(f'SELECT * FROM "{table}"'):
                yield from row
    finally:
        connection.close()


def capture_values(path: Path) -> Iterator[object]:
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        yield entry
        for name in ("body", "bytes"):
            if name in entry:
                yield base64.b64decode(entry[name])
