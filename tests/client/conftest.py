"""Fixtures for the ``veilpost`` library tests.

These tests import only the standard library, pytest and ``veilpost`` (hypothesis where
noted), because the same files also run inside Pyodide (``tests/pyodide/run.mjs``). The
crypto tests run once per available backend: both on CPython with the ``native`` extra, only
``pure`` inside Pyodide. Under ``CI=true`` on CPython a missing native backend is an error,
not a silent skip.
"""

from __future__ import annotations

from typing import Any

import pytest
from support import BACKENDS, VECTOR_COUNTS

from veilpost.crypto.backend import CryptoBackend, get_backend


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> CryptoBackend:
    """Each available crypto backend in turn."""
    return get_backend(request.param)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not VECTOR_COUNTS:
        return
    terminalreporter.section("test vectors run")
    for name in sorted(VECTOR_COUNTS):
        counts = VECTOR_COUNTS[name]
        detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        terminalreporter.write_line(f"{name}: {detail}")
