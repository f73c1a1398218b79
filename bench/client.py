"""Benchmark of the messaging client end to end: clients on CPython talking through a real
relay (Daphne, SQLite, in-memory channel layer) on loopback.

Measures, per crypto backend (``native``; ``pure`` with ``--pure``):

- DM latency: one client sends, the other has decrypted and stored it (send → receive), median
  and p95 over ``--messages`` messages sent one at a time;
- throughput: messages a sender pushes into a DM back to back until the receiver has them all;
- group set-up: creating a group with N members (claiming their key packages, one Commit, the
  Welcome) until the last member has joined, for N in ``--sizes``.

    .venv/bin/python bench/client.py [--messages 200] [--sizes 2,5,10] [--pure]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "relay"))

import daphne_nodes  # noqa: E402

from veilpost.client.client import Client  # noqa: E402
from veilpost.client.identity import InstallationKey  # noqa: E402
from veilpost.client.storage import Store, new_key  # noqa: E402
from veilpost.crypto import get_provider  # noqa: E402
from veilpost.transport import RelayConnection  # noqa: E402

Opened = tuple[Client, asyncio.Task[None], RelayConnection]


async def open_client(url: str, directory: Path, backend: str) -> Opened:
    provider = get_provider(backend)
    key = InstallationKey.generate(provider=provider)
    store = Store.open(str(directory / f"{key.installation_id}.sqlite3"), new_key())
    connection = await RelayConnection.open(url, key)
    client = Client(key, connection.inbox_id, store, connection, provider=provider)
    await client.start()
    return client, asyncio.create_task(client.run()), connection


async def close(opened: list[Opened]) -> None:
    for client, task, connection in opened:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0.05)  # let background subscriptions finish
        await connection.close()
        client.store.close()


class Received:
    """Counts the text messages a client receives, from its event queue (reading the store
    back would cost more than what is measured)."""

    def __init__(self, client: Client) -> None:
        self.count = 0
        self.task = asyncio.create_task(self._consume(client))

    async def _consume(self, client: Client) -> None:
        while True:
            event = await client.events.get()
            message = event.message
            if (
                event.kind == "message"
                and message is not None
                and message.status == "received"
                and message.content_type.startswith("veilpost.org/text")
            ):
                self.count += 1


async def wait(predicate, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached")
        await asyncio.sleep(0.0005)


async def run(url: str, directory: Path, backend: str, messages: int, sizes: list[int]) -> None:
    pair = [await open_client(url, directory, backend) for _ in range(2)]
    (alice, _, _), (bob, _, _) = pair
    dm = await alice.new_dm(bob.inbox_id)
    await wait(lambda: bool(bob.conversations()))
    received = Received(bob)
    latencies = []
    for n in range(messages):
        before = received.count
        start = time.perf_counter()
        await alice.send(dm.id, f"latency {n}")
        await wait(lambda before=before: received.count > before)
        latencies.append((time.perf_counter() - start) * 1000)
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95) - 1]
    print(
        f"  DM send→receive ({messages} sequential): median {statistics.median(latencies):.1f}"
        f" ms, p95 {p95:.1f} ms",
        flush=True,
    )
    before = received.count
    start = time.perf_counter()
    for n in range(messages):
        await alice.send(dm.id, f"throughput {n}")
    await wait(lambda: received.count >= before + messages)
    elapsed = time.perf_counter() - start
    print(f"  DM throughput: {messages / elapsed:.0f} messages/s (send to all received)")
    for size in sizes:
        members = [await open_client(url, directory, backend) for _ in range(size - 1)]
        start = time.perf_counter()
        group = await alice.new_group([m.inbox_id for m, _, _ in members])
        await wait(
            lambda members=members, group=group: all(
                any(c.id == group.id for c in m.conversations()) for m, _, _ in members
            )
        )
        elapsed = (time.perf_counter() - start) * 1000
        print(f"  group of {size}: created and joined by all in {elapsed:.0f} ms", flush=True)
        await close(members)
    received.task.cancel()
    await close(pair)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--sizes", default="2,5,10")
    parser.add_argument("--pure", action="store_true", help="also run the pure backend")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        env = daphne_nodes.sqlite_env(base / "relay.sqlite3", **daphne_nodes.UNLIMITED_RATES)
        daphne_nodes.migrate(env, timeout=120)
        port, process = daphne_nodes.start_daphne(env, base / "daphne.log")
        try:
            if not daphne_nodes.wait_up(process, port, 60):
                raise SystemExit((base / "daphne.log").read_text())
            print(f"relay: Daphne on 127.0.0.1:{port}, SQLite; Python {platform.python_version()}")
            for backend in ["native", *(["pure"] if args.pure else [])]:
                print(f"backend {backend}:", flush=True)
                clients = base / backend
                clients.mkdir()
                asyncio.run(run(f"http://127.0.0.1:{port}", clients, backend, args.messages, sizes))
        finally:
            daphne_nodes.stop([process])


if __name__ == "__main__":
    main()
