"""Run MLS working-group test-vector files: ``python -m veilpost.mls.vectors FILE...``.

Each file's kind is detected from its name (``tree-math.json``, ``passive-client-random.json``
…) or, failing that, from the fields of its first case. Every case is checked; cases for
cipher suites Veilpost does not implement are skipped and counted. The last line of output is
``N passed, N failed, N skipped``; the exit status is 1 if anything failed, 2 on usage errors.
The crypto backend follows ``VEILPOST_CRYPTO_BACKEND`` (or ``--backend``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from veilpost.crypto import CryptoProvider, UnsupportedError
from veilpost.mls.vectors import CHECKERS, Skip, load_checkers

# Fields that identify a kind when the file name does not: the first match wins.
_SIGNATURES: list[tuple[str, frozenset[str]]] = [
    ("deserialization", frozenset({"vlbytes_header", "length"})),
    ("tree-math", frozenset({"n_leaves", "n_nodes", "root"})),
    ("crypto-basics", frozenset({"ref_hash", "expand_with_label", "sign_with_label"})),
    ("secret-tree", frozenset({"encryption_secret", "sender_data", "leaves"})),
    ("message-protection", frozenset({"encryption_secret", "membership_key", "application"})),
    ("key-schedule", frozenset({"initial_init_secret", "epochs"})),
    ("psk_secret", frozenset({"psks", "psk_secret"})),
    ("transcript-hashes", frozenset({"authenticated_content", "confirmation_key"})),
    ("welcome", frozenset({"init_priv", "signer_pub", "welcome", "key_package"})),
    ("tree-operations", frozenset({"tree_before", "proposal", "tree_after"})),
    ("tree-validation", frozenset({"tree", "resolutions", "tree_hashes"})),
    ("treekem", frozenset({"update_paths", "leaves_private"})),
    ("messages", frozenset({"mls_welcome", "mls_group_info", "mls_key_package"})),
    (
        "passive-client",
        frozenset({"key_package", "welcome", "epochs", "initial_epoch_authenticator"}),
    ),
]


def detect_kind(path: Path, cases: list[dict[str, Any]]) -> str | None:
    """The vector kind of ``path``: from its name, else from its first case's fields."""
    stem = path.stem.lower().replace("_", "-")
    for kind in CHECKERS:
        if stem == kind.replace("_", "-"):
            return kind
    if stem.startswith("passive-client"):
        return "passive-client"
    if cases and isinstance(cases[0], dict):
        fields = set(cases[0])
        for kind, signature in _SIGNATURES:
            if signature <= fields:
                return kind
    return None


def run_file(path: Path, provider: CryptoProvider, verbose: bool) -> tuple[int, int, int]:
    """Check every case of one file; print a line per failure and a summary line."""
    try:
        cases = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"{path}: cannot read: {exc}")
        return 0, 1, 0
    if not isinstance(cases, list):
        print(f"{path}: not a vector file (expected a JSON list of cases)")
        return 0, 1, 0
    kind = detect_kind(path, cases)
    if kind is None or kind not in CHECKERS:
        what = f"kind {kind!r} is not implemented yet" if kind else "unknown vector kind"
        print(f"{path}: {what}")
        return 0, 1, 0
    passed = failed = skipped = 0
    started = time.perf_counter()
    for number, case in enumerate(cases):
        try:
            CHECKERS[kind](case, provider)
        except Skip:
            skipped += 1
        except Exception as exc:  # any crash is a failed case, reported with its number
            failed += 1
            suite = case.get("cipher_suite", "-") if isinstance(case, dict) else "-"
            print(f"{path.name} case {number} (suite {suite}): FAILED: {type(exc).__name__}: {exc}")
        else:
            passed += 1
            if verbose:
                print(f"{path.name} case {number}: ok")
    elapsed = time.perf_counter() - started
    print(
        f"{path.name} [{kind}, {provider.backend.name}]: {passed} passed, {failed} failed,"
        f" {skipped} skipped ({elapsed:.1f} s)"
    )
    return passed, failed, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m veilpost.mls.vectors",
        description="Check MLS working-group test-vector files against veilpost.",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument("--backend", choices=["native", "pure"], help="crypto backend")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every case")
    args = parser.parse_args(argv)
    load_checkers()
    try:
        provider = CryptoProvider(args.backend)
    except UnsupportedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    totals = [0, 0, 0]
    for path in args.files:
        for i, count in enumerate(run_file(path, provider, args.verbose)):
            totals[i] += count
    print(f"{totals[0]} passed, {totals[1]} failed, {totals[2]} skipped")
    return 1 if totals[1] else 0


if __name__ == "__main__":
    sys.exit(main())
