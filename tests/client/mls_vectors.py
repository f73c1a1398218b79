"""Run one of :mod:`veilpost.mls.vectors`' checkers over every case of a vector file.

Standard library, pytest and ``veilpost`` only: these tests also run inside Pyodide.
"""

from __future__ import annotations

from support import MLS_VECTORS, VECTOR_COUNTS, load_json

from veilpost.crypto import CryptoBackend, CryptoProvider
from veilpost.mls.vectors import Skip, load_checkers


def run_vector_file(
    kind: str,
    backend: CryptoBackend | None,
    *,
    file: str | None = None,
) -> set[int | None]:
    """Check every case of ``<kind>.json`` (or of ``file``) with the registered checker of
    ``kind``.

    Counts what ran in ``VECTOR_COUNTS`` and returns the cipher suites of the cases that
    passed (``None`` for files without suites). A mismatch fails the test, naming the case.
    """
    file = file or f"{kind}.json"
    label = f"mls {file}" + (f" [{backend.name}]" if backend else "")
    counts = VECTOR_COUNTS[label]
    provider = CryptoProvider(backend)
    passed: set[int | None] = set()
    for number, case in enumerate(load_json(MLS_VECTORS / file)):
        suite = case.get("cipher_suite")
        try:
            load_checkers()[kind](case, provider)
        except Skip:
            counts["skipped (suite not implemented)"] += 1
            continue
        except AssertionError as exc:
            raise AssertionError(f"{file} case {number} (cipher suite {suite}): {exc}") from exc
        counts[f"passed suite {suite}" if suite is not None else "passed"] += 1
        passed.add(suite)
    return passed
