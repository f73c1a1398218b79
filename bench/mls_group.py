"""Timings of the MLS group state machine: native and pure on CPython, pure inside Pyodide.

    .venv/bin/python bench/mls_group.py            # all three columns (needs ./dev setup)
    .venv/bin/python bench/mls_group.py --no-pyodide
    .venv/bin/python bench/mls_group.py --json pure   # one column as JSON (used inside Pyodide)

Each figure is the median wall-clock time in milliseconds of a few runs (the big group
operations run 3 times, the message round trip many times). Key packages are made before the
clock starts. Results go in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from veilpost.crypto import CipherSuite, CryptoProvider, native_available
from veilpost.mls import Group, GroupConfig, KeyPackageBundle, SigningIdentity, make_key_package
from veilpost.mls.events import ApplicationMessage, StagedCommit

NOW = 1_750_000_000


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def measure(backend: str, quick: bool = False) -> dict[str, float]:
    """Time the group operations on one backend; return {operation: median ms}."""
    suite = CipherSuite(1, CryptoProvider(backend))
    config = GroupConfig(clock=lambda: NOW)
    runs = 1 if quick else 3
    creator = SigningIdentity.generate(suite, b"creator")
    identities = [SigningIdentity.generate(suite, b"member %d" % i) for i in range(100)]
    results: dict[str, float] = {}

    def create_and_add(n: int) -> tuple[float, Group, bytes, list[KeyPackageBundle]]:
        bundles = [make_key_package(suite, identities[i], now=NOW) for i in range(n)]
        start = time.perf_counter()
        group = Group.create(suite, creator, config=config)
        output = group.commit(add=[b.key_package for b in bundles])
        group.merge_pending_commit()
        elapsed = time.perf_counter() - start
        assert output.welcome is not None
        return elapsed, group, output.welcome, bundles

    for n in (10, 100):
        times = []
        for _ in range(runs):
            elapsed, group, welcome, bundles = create_and_add(n)
            times.append(elapsed)
        results[f"create a group, add {n} members in one commit"] = statistics.median(times) * 1000

    def join() -> Group:
        return Group.join_from_welcome(
            welcome,
            bundles[-1],
            provider=suite.provider,
            config=config,
        )

    results["join a 100-member group from the Welcome"] = _median_ms(join, runs)
    member = join()

    def round_trip() -> None:
        event = member.process(group.encrypt(bytes(1024)))
        assert isinstance(event, ApplicationMessage)

    results["1 KiB application message round trip"] = _median_ms(round_trip, 5 if quick else 50)

    commit_times, process_times = [], []
    for _ in range(runs):
        start = time.perf_counter()
        output = group.commit(update=True)
        group.merge_pending_commit()
        commit_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        staged = member.process(output.commit)
        assert isinstance(staged, StagedCommit)
        member.merge_staged_commit(staged)
        process_times.append(time.perf_counter() - start)
    results["commit with a path in a 100-member group"] = statistics.median(commit_times) * 1000
    results["process and merge that commit (another member)"] = (
        statistics.median(process_times) * 1000
    )
    results["save the 100-member group state (to_bytes)"] = _median_ms(member.to_bytes, runs)
    saved = member.to_bytes()
    results["load it (from_bytes)"] = _median_ms(
        lambda: Group.from_bytes(saved, suite.provider), runs
    )
    return results


def measure_in_pyodide(quick: bool) -> dict[str, float]:
    """Run :func:`measure` for the pure backend inside Pyodide under Node."""
    root = Path(__file__).resolve().parents[1]
    cmd = ["node", str(root / "bench" / "pyodide_bench.mjs"), "--module", "mls_group"]
    if quick:
        cmd.append("--quick")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.2f}" if value < 10 else f"{value:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", metavar="BACKEND", help="measure one backend, print JSON")
    parser.add_argument("--no-pyodide", action="store_true", help="skip the Pyodide column")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args.json, args.quick)))
        return
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs",
        file=sys.stderr,
    )
    columns: dict[str, dict[str, float]] = {}
    if native_available():
        print("# measuring native on CPython", file=sys.stderr)
        columns["native, CPython"] = measure("native", args.quick)
    print("# measuring pure on CPython", file=sys.stderr)
    columns["pure, CPython"] = measure("pure", args.quick)
    if not args.no_pyodide:
        print("# measuring pure inside Pyodide (node bench/pyodide_bench.mjs)", file=sys.stderr)
        columns["pure, Pyodide"] = measure_in_pyodide(args.quick)
    names = list(next(iter(columns.values())))
    print("| operation (median ms) | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name in names:
        print(f"| {name} | " + " | ".join(_fmt(c.get(name)) for c in columns.values()) + " |")


if __name__ == "__main__":
    main()
