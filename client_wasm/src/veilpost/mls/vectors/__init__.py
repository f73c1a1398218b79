"""Checkers for the MLS working group's test vectors (``mlswg/mls-implementations``).

One module per kind of vector file; each registers a checker with :func:`checker`. A checker
takes one case (a dict from the JSON file) and a crypto provider, and either returns (pass),
raises :class:`Skip` (a cipher suite we do not implement) or raises :class:`VectorMismatch`
naming what differed. The same checkers drive the pytest tests and the command-line runner
``python -m veilpost.mls.vectors FILE...``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from veilpost.crypto import CipherSuite, CryptoProvider, UnsupportedError

Case = dict[str, Any]
Checker = Callable[[Case, CryptoProvider], None]

CHECKERS: dict[str, Checker] = {}
"""Vector kind (the file's stem in the upstream repository, e.g. ``"tree-math"``) → checker."""

_CHECKER_MODULES = (
    "crypto_basics",
    "deserialization",
    "key_schedule",
    "message_protection",
    "messages",
    "passive_client",
    "psk_secret",
    "secret_tree",
    "transcript_hashes",
    "tree_math",
    "tree_operations",
    "tree_validation",
    "treekem",
    "welcome",
)


def load_checkers() -> dict[str, Checker]:
    """Import every checker module (each registers itself) and return :data:`CHECKERS`."""
    for name in _CHECKER_MODULES:
        importlib.import_module(f"{__name__}.{name}")
    return CHECKERS


class VectorMismatch(AssertionError):
    """Our result differs from the vector's."""


class Skip(Exception):
    """The case needs something we do not implement (only: an unsupported cipher suite)."""


def checker(kind: str) -> Callable[[Checker], Checker]:
    """Register the decorated function as the checker of vector files of ``kind``."""

    def register(fn: Checker) -> Checker:
        CHECKERS[kind] = fn
        return fn

    return register


def h(value: str) -> bytes:
    """Decode a hex string from a vector file."""
    return bytes.fromhex(value)


def expect(actual: object, expected: object, what: str) -> None:
    """Raise :class:`VectorMismatch` naming ``what`` unless ``actual == expected``."""
    if actual != expected:
        if isinstance(actual, bytes) and isinstance(expected, bytes):
            actual, expected = actual.hex(), expected.hex()
        raise VectorMismatch(f"{what}: got {actual!r}, expected {expected!r}")


def suite_for(case: Case, provider: CryptoProvider) -> CipherSuite:
    """The case's ``cipher_suite`` on ``provider``, or :class:`Skip` if we lack it."""
    try:
        return CipherSuite(int(case["cipher_suite"]), provider)
    except UnsupportedError as exc:
        raise Skip(f"cipher suite {case['cipher_suite']} not implemented") from exc
