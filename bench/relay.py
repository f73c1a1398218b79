"""Veilpost's relay against a minimal broadcast relay written with ``websockets`` (issue #4).

    .venv/bin/python bench/relay.py                       # all cells (see --help)
    .venv/bin/python bench/relay.py --subscribers 1 100 --seconds 3 --idle 0

Servers, each a separate process on a free loopback port:

- ``veilpost-sqlite``: Daphne with the embedded default (a fresh SQLite file in a temporary
  directory, migrated first; Channels' in-memory layer);
- ``veilpost-pg``: Daphne on this machine's PostgreSQL (a fresh database) and Redis
  (``--no-postgres`` leaves it out; it is skipped when either service is unreachable);
- ``minimal``: an asyncio ``websockets`` server (this file, ``--serve-minimal``): clients
  subscribe to a topic, a publish gets a sequence number, is fanned out to every subscriber with
  ``websockets.broadcast`` and acked. No storage, no authentication: the practical ceiling.

All clients run in this one asyncio process. For each server and subscriber count, on a fresh
topic:

- latency: one publisher sends ``--rate`` envelopes per second; each payload carries the
  send time (``perf_counter_ns``), subscribers take the difference on receipt: p50/p99 over all
  deliveries;
- throughput: ``--publishers`` connections publish as fast as acks allow (``--in-flight``
  unacknowledged publishes each, and never more than 1,000 envelopes ahead of the slowest
  subscriber, the relay's send window), for ``--seconds``; deliveries are counted across all
  subscribers.

Veilpost subscribers acknowledge with ``received`` every 100 envelopes, and at least every
100 ms, as the protocol requires. Memory per idle connection: server RSS before and after opening
``--idle`` authenticated connections (opened first, on the freshly started server).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import secrets
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "relay"))  # daphne_nodes: shared with the scale-out tests

import daphne_nodes  # noqa: E402
import redis  # noqa: E402
from daphne_nodes import PG_HOST, PG_PORT, REDIS_HOST, REDIS_PORT  # noqa: E402

from veilpost.codec import encode  # noqa: E402
from veilpost.crypto import get_backend, get_cipher_suite  # noqa: E402
from veilpost.mls.framing import ContentType, MLSMessage, PrivateMessage  # noqa: E402
from webapp.relay.identifiers import auth_message, group_topic  # noqa: E402

SUITE = get_cipher_suite(0x0001)
WINDOW = 1000  # the relay's send window: publishers stay at most this far ahead
ACK_EVERY = 100
PAYLOAD_PADDING = 256  # ciphertext bytes per envelope (a short padded message)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- Servers -----------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class Server:
    name: str
    kind: str  # "veilpost" or "minimal"
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v1"

    @property
    def audience(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        daphne_nodes.stop([self.process])
        for step in self.cleanup:
            with contextlib.suppress(Exception):
                step()


def wait_ready(server: Server, health: bool, seconds: float = 60) -> None:
    if not daphne_nodes.wait_up(server.process, server.port, seconds, health=health):
        tail = server.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{server.name} did not come up:\n{tail}")


def start_veilpost(name: str, workdir: Path, extra_env: dict[str, str]) -> Server:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "VEILPOST_DEBUG": "0",
        "VEILPOST_SECRET_KEY": secrets.token_urlsafe(32),
        "VEILPOST_LOG_LEVEL": "WARNING",
        # One publisher connection publishes thousands of envelopes per second here; the
        # per-installation limit (50/s by default) would measure the rate limiter.
        "VEILPOST_PUBLISH_RATE": "1000000",
        "VEILPOST_PUBLISH_BURST": "1000000",
        **extra_env,
    }
    for variable in ("DATABASE_URL", "REDIS_URL"):  # only what this server is given
        if variable not in extra_env:
            env.pop(variable, None)
    daphne_nodes.migrate(env, timeout=180)
    log = workdir / f"{name}.log"
    port, process = daphne_nodes.start_daphne(env, log)
    server = Server(name, "veilpost", port, process, log)
    wait_ready(server, health=True)
    return server


def start_veilpost_sqlite(workdir: Path) -> Server:
    """The embedded default, on a fresh SQLite file: the default settings, with the database
    file moved to ``workdir`` (a settings module there that changes only its NAME)."""
    settings_dir = workdir / "settings"
    settings_dir.mkdir()
    database = workdir / "veilpost.sqlite3"
    (settings_dir / "bench_settings.py").write_text(
        "from webapp.settings import *  # noqa: F403\n"
        f"DATABASES['default']['NAME'] = {str(database)!r}  # noqa: F405\n"
    )
    pythonpath = os.pathsep.join([str(settings_dir), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return start_veilpost(
        "veilpost-sqlite",
        workdir,
        {"DJANGO_SETTINGS_MODULE": "bench_settings", "PYTHONPATH": pythonpath},
    )


def start_veilpost_postgres(workdir: Path) -> Server | str:
    """Daphne on PostgreSQL (a fresh database) and Redis, or why not."""
    try:
        admin = daphne_nodes.admin_connection()
    except ConnectionError:
        return f"cannot connect to PostgreSQL at {PG_HOST}:{PG_PORT}"
    try:
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        admin.close()
        return f"cannot reach Redis ({error})"
    database = f"veilpost_bench_{os.getpid()}"
    daphne_nodes.create_database(admin, database)

    def drop() -> None:
        daphne_nodes.drop_database(admin, database)
        admin.close()

    try:
        server = start_veilpost(
            "veilpost-pg",
            workdir,
            {
                "DATABASE_URL": daphne_nodes.database_url(admin, database),
                "REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{1 + os.getpid() % 15}",
            },
        )
    except Exception:
        drop()
        raise
    server.cleanup.append(drop)
    return server


def start_minimal(workdir: Path) -> Server:
    port = daphne_nodes.free_port()
    log = workdir / "minimal.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, __file__, "--serve-minimal", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server("minimal", "minimal", port, process, log)
    wait_ready(server, health=False)
    return server


# --- The minimal relay -------------------------------------------------------------------------


async def serve_minimal(port: int) -> None:
    """Topics → subscribers; publish = next sequence, broadcast, ack. Nothing stored."""
    topics: dict[str, set[ServerConnection]] = {}
    sequences: dict[str, int] = {}

    async def handler(ws: ServerConnection) -> None:
        joined: set[str] = set()
        try:
            async for raw in ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "publish":
                    topic = frame["topic"]
                    sequence = sequences.get(topic, 0) + 1
                    sequences[topic] = sequence
                    envelope = json.dumps(
                        {
                            "type": "envelope",
                            "topic": topic,
                            "sequence": sequence,
                            "id": frame["id"],
                            "payload": frame["payload"],
                        },
                        separators=(",", ":"),
                    )
                    broadcast(topics.get(topic, ()), envelope)
                    ack = {"type": "ack", "topic": topic, "id": frame["id"], "sequence": sequence}
                    await ws.send(json.dumps(ack, separators=(",", ":")))
                elif kind == "subscribe":
                    topic = frame["topic"]
                    topics.setdefault(topic, set()).add(ws)
                    joined.add(topic)
                    await ws.send(json.dumps({"type": "subscribed", "topic": topic}))
        except ConnectionClosed:
            pass
        finally:
            for topic in joined:
                topics[topic].discard(ws)

    async with serve(handler, "127.0.0.1", port, max_size=None, ping_interval=None):
        await asyncio.Future()


# --- Clients -----------------------------------------------------------------------------------


class Device:
    """An installation key (Ed25519, from veilpost.crypto)."""

    def __init__(self) -> None:
        self.private_key, self.public_key = SUITE.signature_key_pair()

    def auth_frame(self, nonce: str, audience: str) -> dict[str, Any]:
        message = auth_message(audience, base64.b64decode(nonce))
        signature = get_backend().ed25519_sign(self.private_key, message)
        return {
            "type": "auth",
            "nonce": nonce,
            "public_key": b64(self.public_key),
            "signature": b64(signature),
        }


def envelope_payload(group_id: bytes, sent_ns: int) -> bytes:
    """An MLS PrivateMessage whose ciphertext ends with the send time: the payload's last 8
    bytes (the ciphertext is the message's last field)."""
    ciphertext = secrets.token_bytes(PAYLOAD_PADDING - 8) + struct.pack(">Q", sent_ns)
    message = PrivateMessage(group_id, 0, ContentType.APPLICATION, b"", b"sender-data", ciphertext)
    return encode(MLSMessage(message))


def is_envelope(raw: str | bytes) -> bool:
    return isinstance(raw, str) and '"type":"envelope"' in raw[:24]


async def receive(ws: ClientConnection, expected: str, timeout: float = 30) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame["type"] == expected:
            return frame
        if frame["type"] == "error":
            raise RuntimeError(f"relay error while waiting for {expected}: {frame}")


async def open_connection(server: Server, device: Device | None) -> ClientConnection:
    ws = await connect(server.url, max_size=None, ping_interval=None, open_timeout=60)
    if server.kind == "veilpost":
        challenge = await receive(ws, "challenge")
        # The audience is the host this client connected to, not what the relay announces.
        assert device is not None
        await ws.send(json.dumps(device.auth_frame(challenge["nonce"], server.audience)))
        await receive(ws, "authenticated")
    return ws


async def open_many(
    server: Server, count: int, devices: list[Device], parallel: int = 32
) -> list[ClientConnection]:
    gate = asyncio.Semaphore(parallel)

    async def one(index: int) -> ClientConnection:
        async with gate:
            return await open_connection(server, devices[index % len(devices)])

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def subscribe(server: Server, ws: ClientConnection, topic: str) -> None:
    if server.kind == "veilpost":
        await ws.send(json.dumps({"type": "subscribe", "topics": {topic: 0}}))
    else:
        await ws.send(json.dumps({"type": "subscribe", "topic": topic}))
    await receive(ws, "subscribed")


async def close_all(connections: list[ClientConnection]) -> None:
    await asyncio.gather(*(ws.close() for ws in connections), return_exceptions=True)


@dataclass
class Subscriber:
    ws: ClientConnection
    topic: str
    acks: bool  # send `received` (Veilpost)
    count: int = 0
    acked: int = 0
    latencies: list[float] | None = None  # ms, when measuring latency

    async def run(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                if not is_envelope(raw):
                    if '"type":"error"' in str(raw):
                        print(f"  subscriber got {raw!r}"[:300], file=sys.stderr)
                    continue
                self.count += 1
                if self.latencies is not None:
                    payload = base64.b64decode(json.loads(raw)["payload"])
                    (sent_ns,) = struct.unpack(">Q", payload[-8:])
                    self.latencies.append((time.perf_counter_ns() - sent_ns) / 1e6)
                if self.acks and self.count - self.acked >= ACK_EVERY:
                    await self.ack()

    async def ack(self) -> None:
        if self.count > self.acked:
            self.acked = self.count  # the topic is fresh: sequence == envelopes received
            frame = {"type": "received", "topics": {self.topic: self.count}}
            with contextlib.suppress(ConnectionClosed):
                await self.ws.send(json.dumps(frame))


async def ack_idle(subscribers: list[Subscriber], stop: asyncio.Event) -> None:
    """Acknowledge what is left every 100 ms ("or when idle")."""
    while not stop.is_set():
        await asyncio.sleep(0.1)
        for sub in subscribers:
            if sub.acks and sub.count > sub.acked:
                await sub.ack()


class Publisher:
    """One publishing connection; acks are read by a background task."""

    def __init__(self, ws: ClientConnection, topic: str, group_id: bytes, in_flight: int) -> None:
        self.ws = ws
        self.topic = topic
        self.group_id = group_id
        self.gate = asyncio.Semaphore(in_flight)
        self.sent = 0
        self.acked = 0
        self.reader = asyncio.create_task(self.read_acks())

    async def read_acks(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame["type"] == "ack":
                    self.acked += 1
                    self.gate.release()
                elif frame["type"] == "error":
                    print(f"  publisher got {frame}", file=sys.stderr)
                    self.gate.release()

    async def publish(self) -> None:
        await self.gate.acquire()
        payload = envelope_payload(self.group_id, time.perf_counter_ns())
        frame = {
            "type": "publish",
            "topic": self.topic,
            "id": secrets.token_hex(16),
            "payload": b64(payload),
        }
        self.sent += 1
        await self.ws.send(json.dumps(frame))

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


@dataclass
class Cell:
    server: str
    subscribers: int
    p50_ms: float | None = None
    p99_ms: float | None = None
    latency_samples: int = 0
    delivered_per_s: float | None = None
    published_per_s: float | None = None
    note: str = ""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_cell(server: Server, n: int, devices: list[Device], args: argparse.Namespace) -> Cell:
    cell = Cell(server.name, n)
    group_id = secrets.token_bytes(16)
    topic = group_topic(group_id)
    veilpost = server.kind == "veilpost"
    started = time.perf_counter()
    connections = await open_many(server, n, devices)
    for ws in connections:
        await subscribe(server, ws, topic)
    subscribers = [Subscriber(ws, topic, acks=veilpost) for ws in connections]
    print(f"  {n} subscribers ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    readers = [asyncio.create_task(sub.run()) for sub in subscribers]
    stop_acks = asyncio.Event()
    acker = asyncio.create_task(ack_idle(subscribers, stop_acks))
    publishers: list[Publisher] = []
    try:
        # Latency: one publisher at a fixed rate.
        for sub in subscribers:
            sub.latencies = []
        pub_ws = await open_connection(server, devices[0])
        latency_pub = Publisher(pub_ws, topic, group_id, in_flight=1000)
        publishers.append(latency_pub)
        interval = 1 / args.rate
        begin = time.perf_counter()
        total = int(args.seconds * args.rate)
        for i in range(total):
            delay = begin + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await latency_pub.publish()
        expected = total * n
        deadline = time.perf_counter() + 30
        while sum(s.count for s in subscribers) < expected and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        samples = [x for s in subscribers for x in (s.latencies or [])]
        for sub in subscribers:
            sub.latencies = None
        if samples:
            cell.p50_ms = percentile(samples, 0.50)
            cell.p99_ms = percentile(samples, 0.99)
            cell.latency_samples = len(samples)
        if len(samples) < expected:
            cell.note += f"latency: {len(samples)}/{expected} delivered in time; "

        # Throughput: publishers as fast as acks (and the send window) allow.
        base = sum(s.count for s in subscribers)
        published_before = latency_pub.sent
        for _ in range(args.publishers - 1):
            ws = await open_connection(server, devices[0])
            publishers.append(Publisher(ws, topic, group_id, args.in_flight))
        for pub in publishers:
            pub.gate = asyncio.Semaphore(args.in_flight)
        stop = asyncio.Event()

        async def flood(pub: Publisher) -> None:
            while not stop.is_set():
                ahead = sum(p.sent for p in publishers) - published_before
                slowest = min(s.count for s in subscribers) - base // n
                if ahead - slowest >= WINDOW - args.in_flight * len(publishers):
                    await asyncio.sleep(0.001)
                    continue
                await pub.publish()

        floods = [asyncio.create_task(flood(pub)) for pub in publishers]
        await asyncio.sleep(args.warmup)
        count0 = sum(s.count for s in subscribers)
        acked0 = sum(p.acked for p in publishers)
        t0 = time.perf_counter()
        await asyncio.sleep(args.seconds)
        elapsed = time.perf_counter() - t0
        cell.delivered_per_s = (sum(s.count for s in subscribers) - count0) / elapsed
        cell.published_per_s = (sum(p.acked for p in publishers) - acked0) / elapsed
        stop.set()
        await asyncio.gather(*floods, return_exceptions=True)
    finally:
        stop_acks.set()
        await asyncio.gather(acker, return_exceptions=True)
        for pub in publishers:
            await pub.close()
        await close_all(connections)
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return cell


async def measure_idle(server: Server, n: int, devices: list[Device]) -> tuple[float, float]:
    """(KiB per idle connection, seconds to open them)."""
    await asyncio.sleep(1)
    before = rss_kib(server.process.pid)
    started = time.perf_counter()
    connections = await open_many(server, n, devices, parallel=64)
    opened = time.perf_counter() - started
    await asyncio.sleep(2)
    after = rss_kib(server.process.pid)
    await close_all(connections)
    await asyncio.sleep(10)  # let the server finish the disconnects before the next cell
    return (after - before) / n, opened


# --- Report ------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def table(cells: list[Cell], memory: dict[str, tuple[float, float]], idle: int) -> str:
    lines = [
        "| server | subscribers | latency p50 (ms) | latency p99 (ms) | delivered envelopes/s"
        " | publishes acked/s | latency samples |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in cells:
        lines.append(
            f"| {c.server} | {c.subscribers:,} | {fmt(c.p50_ms)} | {fmt(c.p99_ms)} |"
            f" {fmt(c.delivered_per_s, 0)} | {fmt(c.published_per_s, 0)} | {c.latency_samples:,} |"
        )
    if memory:
        lines += ["", f"| server | RSS per idle connection at {idle:,} | time to open them |"]
        lines.append("| --- | ---: | ---: |")
        for name, (kib, seconds) in memory.items():
            lines.append(f"| {name} | {kib:.1f} KiB | {seconds:.1f} s |")
    notes = [f"- {c.server} × {c.subscribers}: {c.note}" for c in cells if c.note]
    return "\n".join(lines + (["", *notes] if notes else []))


@contextlib.contextmanager
def started(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


async def bench(args: argparse.Namespace) -> None:
    cells: list[Cell] = []
    memory: dict[str, tuple[float, float]] = {}
    devices = [Device() for _ in range(args.devices)]
    starters: list[Callable[[Path], Server | str]] = [start_veilpost_sqlite]
    if args.postgres:
        starters.append(start_veilpost_postgres)
    starters.append(start_minimal)
    with tempfile.TemporaryDirectory(prefix="veilpost-bench-") as tmp:
        workdir = Path(tmp)
        for start in starters:
            outcome = start(workdir)
            if isinstance(outcome, str):
                print(f"skipped PostgreSQL + Redis: {outcome}", file=sys.stderr)
                continue
            with started(outcome) as server:
                print(f"{server.name} on port {server.port}", file=sys.stderr)
                if args.idle:
                    memory[server.name] = await measure_idle(server, args.idle, devices)
                    print(f"  idle: {memory[server.name]}", file=sys.stderr)
                for n in args.subscribers:
                    try:
                        cell = await run_cell(server, n, devices, args)
                    except Exception as error:  # a failed cell is reported, not fatal
                        cell = Cell(server.name, n, note=f"failed: {error!r}"[:200])
                        tail = server.log.read_text(errors="replace")[-2000:]
                        print(f"  {server.name} log tail:\n{tail}", file=sys.stderr)
                    print(f"  {cell}", file=sys.stderr)
                    cells.append(cell)
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs,"
        f" CPython {platform.python_version()}; {args.seconds:g} s per cell"
        f" (latency at {args.rate:g} publishes/s; throughput with {args.publishers} publishers"
        f" × {args.in_flight} in flight after {args.warmup:g} s warm-up).\n"
    )
    print(table(cells, memory, args.idle))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase of each cell")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rate", type=float, default=2.0, help="publishes/s for latency")
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--devices", type=int, default=8, help="installation keys to share")
    parser.add_argument("--idle", type=int, default=5000, help="idle connections (0: skip)")
    parser.add_argument("--no-postgres", dest="postgres", action="store_false")
    parser.add_argument("--serve-minimal", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_minimal:
        asyncio.run(serve_minimal(args.serve_minimal))
        return
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
