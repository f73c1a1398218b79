"""Per-operation timings of the crypto layer: native and pure on CPython, pure inside Pyodide.

    .venv/bin/python bench/crypto.py            # all three columns (needs ./dev setup)
    .venv/bin/python bench/crypto.py --no-pyodide
    .venv/bin/python bench/crypto.py --json      # one column as JSON (used inside Pyodide)

Each figure is the median wall-clock time of repeated runs after a warm-up, in milliseconds.
The Pyodide column runs this same file inside Pyodide under Node (bench/pyodide_bench.mjs),
with the veilpost wheel that ``./dev setup`` built. Results go in docs/performance.md.
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
from functools import partial
from pathlib import Path

from veilpost.crypto import Aead, CryptoProvider, Hpke, get_backend, native_available

KIB = 1024
MIB = 1024 * 1024
TARGETS = {  # pure backend inside Pyodide, in ms (issue #2)
    "X25519 shared secret": 2.0,
    "Ed25519 sign": 3.0,
    "Ed25519 verify": 6.0,
    "ChaCha20-Poly1305 seal 1 KiB": 1.0,
}


def _median_ms(fn: Callable[[], object], min_runs: int, min_seconds: float) -> float:
    fn()  # warm-up (also builds lazily computed tables)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 1000:
            break
    return statistics.median(times) * 1000


def measure(backend_name: str, quick: bool = False) -> dict[str, float]:
    """Time every operation on one backend; return {operation: median ms}."""
    backend = get_backend(backend_name)
    sk = bytes(range(32))
    pk = backend.x25519_public_key(bytes(range(1, 33)))
    message = b"m" * 100
    signature = backend.ed25519_sign(sk, message)
    ed_pk = backend.ed25519_public_key(sk)
    nonce = bytes(12)
    runs, seconds = (3, 0.05) if quick else (15, 0.5)
    results: dict[str, float] = {}

    def run(name: str, fn: Callable[[], object], big: bool = False) -> None:
        results[name] = _median_ms(fn, 3 if big else runs, 0.0 if big else seconds)

    run("X25519 shared secret", lambda: backend.x25519(sk, pk))
    run("X25519 public key (fixed base)", lambda: backend.x25519_public_key(sk))
    run("Ed25519 sign", lambda: backend.ed25519_sign(sk, message))
    run("Ed25519 verify", lambda: backend.ed25519_verify(ed_pk, message, signature))
    for aead, label in (
        (Aead.AES_128_GCM, "AES-128-GCM"),
        (Aead.CHACHA20_POLY1305, "ChaCha20-Poly1305"),
    ):
        key = bytes(aead.key_size)
        for size, size_label in ((KIB, "1 KiB"), (MIB, "1 MiB")):
            data = bytes(size)
            sealed = backend.aead_seal(aead, key, nonce, b"", data)
            big = size == MIB
            run(
                f"{label} seal {size_label}",
                partial(backend.aead_seal, aead, key, nonce, b"", data),
                big,
            )
            run(
                f"{label} open {size_label}",
                partial(backend.aead_open, aead, key, nonce, b"", sealed),
                big,
            )
    hpke = Hpke(CryptoProvider(backend), Aead.AES_128_GCM)
    hpke_sk, hpke_pk = hpke.generate_key_pair()
    enc, ct = hpke.seal_base(hpke_pk, b"info", b"", message)
    run("HPKE seal (suite 1, 100 B)", lambda: hpke.seal_base(hpke_pk, b"info", b"", message))
    run("HPKE open (suite 1, 100 B)", lambda: hpke.open_base(enc, hpke_sk, b"info", b"", ct))
    return results


def measure_in_pyodide(quick: bool) -> dict[str, float]:
    """Run :func:`measure` for the pure backend inside Pyodide under Node."""
    root = Path(__file__).resolve().parents[1]
    cmd = ["node", str(root / "bench" / "pyodide_bench.mjs"), *(["--quick"] if quick else [])]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.3f}" if value < 10 else f"{value:,.1f}"


def print_table(columns: dict[str, dict[str, float]]) -> None:
    names = list(next(iter(columns.values())))
    header = ["operation (median ms)", *columns, "target (pure, Pyodide)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for name in names:
        cells = [_fmt(col.get(name)) for col in columns.values()]
        target = TARGETS.get(name)
        if target is not None and "pure, Pyodide" in columns:
            got = columns["pure, Pyodide"][name]
            cells.append(f"≤ {target:g} ({'met' if got <= target else 'MISSED'})")
        else:
            cells.append(f"≤ {target:g}" if target else "")
        print("| " + " | ".join([name, *cells]) + " |")


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
    columns: dict[str, dict[str, float]] = {}
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs",
        file=sys.stderr,
    )
    if native_available():
        print("# measuring native on CPython", file=sys.stderr)
        columns["native, CPython"] = measure("native", args.quick)
    print("# measuring pure on CPython", file=sys.stderr)
    columns["pure, CPython"] = measure("pure", args.quick)
    if not args.no_pyodide:
        print("# measuring pure inside Pyodide (node bench/pyodide_bench.mjs)", file=sys.stderr)
        columns["pure, Pyodide"] = measure_in_pyodide(args.quick)
    print_table(columns)


if __name__ == "__main__":
    main()
