"""MLS group operations, Veilpost against mls-rs, side by side in one process (suite 1).

    .venv/bin/python bench/mls.py               # every column (needs ./dev setup)
    .venv/bin/python bench/mls.py --no-pyodide  # skip the Pyodide column
    .venv/bin/python bench/mls.py --quick       # one run of everything (smoke test)
    .venv/bin/python bench/mls.py --repeat 3    # every column 3 times in turn; median of each
    .venv/bin/python bench/mls.py --json pure   # one column as JSON (native, pure or mls-rs)

Columns: Veilpost on its native backend and on its pure backend (CPython), mls-rs 0.55 through
the ``mls_rs_uniffi`` bindings (``tests/interop/mlsrs.py``), the ratio of each Veilpost backend
to mls-rs, and the pure backend inside Pyodide under Node (``bench/pyodide_bench.mjs --module
mls``, which imports this file and calls :func:`measure`).

Both implementations run the same scenarios through the same calls (:class:`VeilpostSide`,
:class:`MlsRsSide`), with every message passed as bytes, and from the same tree shape: "the
100-member group" is the one "create + add 100" makes (the creator and the 100 members it
added), in which every parent node is blank, because a commit of Adds only carries no path in
either implementation. The self-update, the add and the remove all start from that state,
restored from saved bytes before each run: the committer is the creator (leaf 0) and the
processing member the last one added. With every parent blank, a path commit encrypts its
path secrets to every other member one by one (about 100 HPKE encryptions): TreeKEM's worst
case, and the situation right after a group is created.

Each figure is the median wall-clock time in milliseconds (5 runs of the group operations, at
least 20 runs and 0.5 s of the small ones); key packages are made before the clock starts.
With ``--repeat K`` the columns are measured K times, taking turns (so that a burst of other
load on the machine hits all of them alike), and each figure is the median of the K rounds.
Results go in docs/performance.md.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from veilpost.crypto import CipherSuite, CryptoProvider, native_available
from veilpost.mls import (
    ApplicationMessage,
    Group,
    GroupConfig,
    KeyPackageBundle,
    SigningIdentity,
    StagedCommit,
    make_key_package,
)

NOW = 1_750_000_000
GROUP = 100
"""Members the creator adds to make "the 100-member group"."""

KEY_PACKAGE = "key package generation"
CREATE_10 = "create a group, add 10 members in one commit"
CREATE_100 = "create a group, add 100 members in one commit"
JOIN = "join the 100-member group from that Welcome"
UPDATE = "self-update commit in the 100-member group"
PROCESS_UPDATE = "process that commit (another member)"
ADD_ONE = "add one member to the 100-member group"
REMOVE_ONE = "remove one member from the 100-member group"
ROUND_TRIP = "encrypt + decrypt a 1 KiB application message"
SAVE = "save the 100-member state"
LOAD = "load the 100-member state"

NATIVE_RATIO_TARGET = 5.0
"""The native backend within this factor of mls-rs on every scenario (issue #3)."""
PYODIDE_TARGETS = {CREATE_100: 2000.0, JOIN: 1000.0, ROUND_TRIP: 15.0}
"""The pure backend inside Pyodide, absolute, in ms (issue #3)."""


class Side(Protocol):
    """One implementation's way of doing each step, bytes in and bytes out.

    ``client`` values and groups are the implementation's own objects (opaque here).
    """

    def client(self, identity: bytes) -> Any: ...
    def key_package(self, client: Any) -> bytes: ...
    def create_and_add(self, creator: Any, key_packages: Sequence[bytes]) -> tuple[Any, bytes]: ...
    def join(self, client: Any, welcome: bytes) -> Any: ...
    def self_update(self, group: Any) -> bytes: ...
    def process_commit(self, group: Any, commit: bytes) -> None: ...
    def add_member(self, group: Any, key_package: bytes) -> None: ...
    def remove_member(self, group: Any, identity: bytes) -> None: ...
    def encrypt(self, group: Any, data: bytes) -> bytes: ...
    def decrypt(self, group: Any, message: bytes) -> bytes: ...
    def save(self, group: Any) -> bytes: ...
    def load(self, state: bytes) -> Any: ...


@dataclass
class VeilpostClient:
    signer: SigningIdentity
    bundles: list[KeyPackageBundle] = field(default_factory=list)


class VeilpostSide:
    """Veilpost's public API (:class:`veilpost.mls.Group`) on one crypto backend, with its
    default :class:`GroupConfig` (handshake messages as PrivateMessage)."""

    def __init__(self, backend: str) -> None:
        self.suite = CipherSuite(1, CryptoProvider(backend))
        self.config = GroupConfig(clock=lambda: NOW)

    def client(self, identity: bytes) -> VeilpostClient:
        return VeilpostClient(SigningIdentity.generate(self.suite, identity))

    def key_package(self, client: VeilpostClient) -> bytes:
        bundle = make_key_package(self.suite, client.signer, now=NOW)
        client.bundles.append(bundle)
        return bundle.to_message()

    def create_and_add(
        self, creator: VeilpostClient, key_packages: Sequence[bytes]
    ) -> tuple[Group, bytes]:
        group = Group.create(self.suite, creator.signer, config=self.config, now=NOW)
        output = group.commit(add=key_packages)
        group.merge_pending_commit()
        assert output.welcome is not None
        return group, output.welcome

    def join(self, client: VeilpostClient, welcome: bytes) -> Group:
        return Group.join_from_welcome(
            welcome, client.bundles[-1], provider=self.suite.provider, config=self.config
        )

    def self_update(self, group: Group) -> bytes:
        output = group.commit(update=True)
        group.merge_pending_commit()
        return output.commit

    def process_commit(self, group: Group, commit: bytes) -> None:
        staged = group.process(commit)
        assert isinstance(staged, StagedCommit)
        group.merge_staged_commit(staged)

    def add_member(self, group: Group, key_package: bytes) -> None:
        group.commit(add=[key_package])
        group.merge_pending_commit()

    def remove_member(self, group: Group, identity: bytes) -> None:
        (leaf,) = [i for i, m in group.members.items() if m.credential.identity == identity]
        group.commit(remove=[leaf])
        group.merge_pending_commit()

    def encrypt(self, group: Group, data: bytes) -> bytes:
        return group.encrypt(data)

    def decrypt(self, group: Group, message: bytes) -> bytes:
        event = group.process(message)
        assert isinstance(event, ApplicationMessage)
        return event.data

    def save(self, group: Group) -> bytes:
        return group.to_bytes()

    def load(self, state: bytes) -> Group:
        return Group.from_bytes(state, self.suite.provider, config=self.config)


def _mlsrs() -> Any:
    """The mls-rs adapter module, from tests/interop (not importable inside Pyodide)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "interop"))
    import mlsrs

    mlsrs.require_available()
    return mlsrs


class MlsRsSide:
    """mls-rs through the byte-level adapter ``MlsRsMember`` (one client per group)."""

    def __init__(self) -> None:
        self.member = _mlsrs().MlsRsMember

    def client(self, identity: bytes) -> Any:
        return self.member(identity)

    def key_package(self, client: Any) -> bytes:
        return client.key_package()  # type: ignore[no-any-return]

    def create_and_add(self, creator: Any, key_packages: Sequence[bytes]) -> tuple[Any, bytes]:
        creator.create_group()
        result = creator.add_members(key_packages)
        return creator, result.welcome

    def join(self, client: Any, welcome: bytes) -> Any:
        client.join(welcome)
        return client

    def self_update(self, group: Any) -> bytes:
        return group.self_update().commit  # type: ignore[no-any-return]

    def process_commit(self, group: Any, commit: bytes) -> None:
        assert group.process(commit).kind == "commit"

    def add_member(self, group: Any, key_package: bytes) -> None:
        group.add_members([key_package])

    def remove_member(self, group: Any, identity: bytes) -> None:
        group.remove_members([identity])

    def encrypt(self, group: Any, data: bytes) -> bytes:
        return group.encrypt(data)  # type: ignore[no-any-return]

    def decrypt(self, group: Any, message: bytes) -> bytes:
        return group.process(message).data  # type: ignore[no-any-return]

    def save(self, group: Any) -> bytes:
        return group.save_state()  # type: ignore[no-any-return]

    def load(self, state: bytes) -> Any:
        return self.member.load_state(state)


def _median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def _repeat_ms(fn: Callable[[], object], min_runs: int, min_seconds: float) -> float:
    """Median of at least ``min_runs`` calls lasting at least ``min_seconds`` together."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return _median_ms(times)


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """Seconds that ``fn(*args)`` took, and what it returned."""
    t0 = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - t0, value


def run_scenarios(side: Side, quick: bool = False) -> dict[str, float]:
    """Time every scenario on one implementation; return {scenario: median ms}."""
    runs = 1 if quick else 5
    small_runs, small_seconds = (3, 0.0) if quick else (20, 0.5)
    results: dict[str, float] = {}
    members = [side.client(b"member %d" % i) for i in range(GROUP - 1)]
    side.key_package(members[0])  # warm-up (lazily built tables)
    results[KEY_PACKAGE] = _repeat_ms(
        lambda: side.key_package(members[0]), small_runs, small_seconds
    )

    group: Any = None
    member: Any = None
    for n in (10, GROUP):
        create_times, join_times = [], []
        for _ in range(runs):
            # A new creator and last member each run: an mls-rs client is in one group at most.
            creator = side.client(b"creator")
            joiners = [*members[: n - 1], side.client(b"member %d" % (n - 1))]
            key_packages = [side.key_package(c) for c in joiners]
            elapsed, (group, welcome) = _timed(side.create_and_add, creator, key_packages)
            create_times.append(elapsed)
            if n == GROUP:
                elapsed, member = _timed(side.join, joiners[-1], welcome)
                join_times.append(elapsed)
        results[CREATE_10 if n == 10 else CREATE_100] = _median_ms(create_times)
    results[JOIN] = _median_ms(join_times)

    # Every commit below starts from the group as "create + add 100" left it.
    creator_state, member_state = side.save(group), side.save(member)
    update_times, process_times = [], []
    for _ in range(runs):
        committer, receiver = side.load(creator_state), side.load(member_state)
        elapsed, commit = _timed(side.self_update, committer)
        update_times.append(elapsed)
        process_times.append(_timed(side.process_commit, receiver, commit)[0])
    results[UPDATE] = _median_ms(update_times)
    results[PROCESS_UPDATE] = _median_ms(process_times)

    add_times, remove_times = [], []
    for run in range(runs):
        committer = side.load(creator_state)
        key_package = side.key_package(side.client(b"newcomer %d" % run))
        add_times.append(_timed(side.add_member, committer, key_package)[0])
        committer = side.load(creator_state)
        remove_times.append(_timed(side.remove_member, committer, b"member %d" % (GROUP // 2))[0])
    results[ADD_ONE] = _median_ms(add_times)
    results[REMOVE_ONE] = _median_ms(remove_times)

    data = bytes(1024)

    def round_trip() -> None:
        assert side.decrypt(member, side.encrypt(group, data)) == data

    results[ROUND_TRIP] = _repeat_ms(round_trip, small_runs, small_seconds)
    results[SAVE] = _repeat_ms(lambda: side.save(member), runs, small_seconds)
    results[LOAD] = _repeat_ms(lambda: side.load(member_state), runs, small_seconds)
    return results


def measure(backend: str, quick: bool = False) -> dict[str, float]:
    """The scenarios on one column: a Veilpost backend (``native``, ``pure``) or ``mls-rs``."""
    side: Side = MlsRsSide() if backend == "mls-rs" else VeilpostSide(backend)
    return run_scenarios(side, quick)


def measure_in_pyodide(quick: bool) -> dict[str, float]:
    """Run :func:`measure` for the pure backend inside Pyodide under Node."""
    root = Path(__file__).resolve().parents[1]
    cmd = ["node", str(root / "bench" / "pyodide_bench.mjs"), "--module", "mls"]
    if quick:
        cmd.append("--quick")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- the table -------------------------------------------------------------------------------

NATIVE, PURE, MLSRS, PYODIDE = "native", "pure", "mls-rs", "pure, Pyodide"


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value:.3f}"
    return f"{value:.2f}" if value < 10 else f"{value:,.0f}"


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or reference is None:
        return "—"
    return f"{value / reference:.1f}×"


def _targets(name: str, columns: dict[str, dict[str, float]]) -> str:
    verdicts = []
    native, reference = columns.get(NATIVE, {}).get(name), columns.get(MLSRS, {}).get(name)
    if native is not None and reference is not None:
        ratio = native / reference
        met = "met" if ratio <= NATIVE_RATIO_TARGET else f"MISSED ({ratio:.1f}×)"
        verdicts.append(f"native ≤ {NATIVE_RATIO_TARGET:g}× mls-rs: {met}")
    limit = PYODIDE_TARGETS.get(name)
    if limit is not None:
        got = columns.get(PYODIDE, {}).get(name)
        met = "not run" if got is None else "met" if got <= limit else f"MISSED ({_fmt(got)})"
        verdicts.append(f"Pyodide ≤ {limit:g}: {met}")
    return "; ".join(verdicts)


def print_table(columns: dict[str, dict[str, float]]) -> None:
    names = list(next(iter(columns.values())))
    header = [
        "scenario (median ms)",
        "Veilpost native",
        "Veilpost pure",
        "mls-rs",
        "native ÷ mls-rs",
        "pure ÷ mls-rs",
        "Veilpost pure, Pyodide",
        "targets",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * 6 + ["---"]) + "|")
    for name in names:
        get = {column: values.get(name) for column, values in columns.items()}
        cells = [
            name,
            _fmt(get.get(NATIVE)),
            _fmt(get.get(PURE)),
            _fmt(get.get(MLSRS)),
            _ratio(get.get(NATIVE), get.get(MLSRS)),
            _ratio(get.get(PURE), get.get(MLSRS)),
            _fmt(get.get(PYODIDE)),
            _targets(name, columns),
        ]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--json", metavar="BACKEND", help="measure one column (native, pure, mls-rs), print JSON"
    )
    parser.add_argument("--no-pyodide", action="store_true", help="skip the Pyodide column")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="K",
        help="measure every column K times, in turn, and report each figure's median",
    )
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args.json, args.quick)))
        return
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs",
        file=sys.stderr,
    )
    names = [NATIVE, PURE, MLSRS] if native_available() else [PURE, MLSRS]
    if not args.no_pyodide:
        names.append(PYODIDE)
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for round_ in range(1, args.repeat + 1):
        for name in names:
            print(f"# round {round_}/{args.repeat}: measuring {name}", file=sys.stderr)
            if name == PYODIDE:
                rounds[name].append(measure_in_pyodide(args.quick))
            else:
                rounds[name].append(measure(name, args.quick))
    print_table({name: _median_of_rounds(results) for name, results in rounds.items()})


def _median_of_rounds(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Each scenario's median over the rounds (each round's figure is itself a median)."""
    return {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}


if __name__ == "__main__":
    main()
