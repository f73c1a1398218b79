"""Scale-out: two real Daphne nodes on loopback sharing this machine's PostgreSQL and Redis.

Clients speak the protocol over real WebSockets (the ``websockets`` package) and real HTTP.
The run gets its own PostgreSQL database (``veilpost_test_<pid>``, migrated, then dropped) and a
Redis database number of its own; channel-layer traffic of another run that shares the number
is harmless (topics are named by random group ids, and consumers skip topics they do not have).

Both nodes are configured as one relay behind a load balancer would be: the same secret key
and the same ``VEILPOST_AUTH_AUDIENCE``, so a client may authenticate at either.

Without PostgreSQL or Redis these tests are skipped, with the reason; under CI (``CI`` set)
they fail instead, so that CI never passes without running them. ``./dev test`` starts both
services when they are installed but not running.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from daphne_nodes import (
    PG_HOST,
    PG_PORT,
    REDIS_HOST,
    REDIS_PORT,
    admin_connection,
    create_database,
    database_url,
    drop_database,
    migrate,
    start_daphne,
    stop,
    wait_up,
)
from relay_support import Device, b64, private_message, unb64
from websockets.asyncio.client import ClientConnection, connect

from webapp.relay.identifiers import group_topic

pytestmark = [pytest.mark.scaleout, pytest.mark.asyncio]

AUDIENCE = "relay.scaleout.test"  # what both nodes announce and clients sign (one relay)
STARTUP_SECONDS = 30


@dataclass
class Node:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v1"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@dataclass
class Cluster:
    a: Node
    b: Node
    database: str
    redis_url: str
    nodes: list[Node] = field(default_factory=list)


# --- Services ---------------------------------------------------------------------------------


def _unavailable(reason: str) -> None:
    """Skip, or under CI fail: the scale-out tests must never silently not run in CI."""
    message = (
        f"scale-out tests need PostgreSQL at {PG_HOST}:{PG_PORT} and Redis at"
        f" {REDIS_HOST}:{REDIS_PORT}: {reason}. `./dev test` starts them when they are"
        " installed."
    )
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so this is an error: {message}", pytrace=False)
    pytest.skip(message)


def _admin_connection() -> psycopg.Connection[Any]:
    try:
        return admin_connection()
    except ConnectionError as error:
        _unavailable(f"cannot connect to PostgreSQL ({error})")
        raise AssertionError("unreachable") from None


def _wait_healthy(node: Node) -> None:
    if not wait_up(node.process, node.port, STARTUP_SECONDS):
        raise AssertionError(f"Daphne node {node.name} did not come up:\n{node.log_tail()}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    admin = _admin_connection()
    try:
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        admin.close()
        _unavailable(f"cannot reach Redis ({error})")
    database = f"veilpost_test_{os.getpid()}"
    redis_url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{1 + os.getpid() % 15}"
    create_database(admin, database)
    logs = tmp_path_factory.mktemp("daphne")
    env = {
        **os.environ,
        "DATABASE_URL": database_url(admin, database),
        "REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "VEILPOST_DEBUG": "0",
        "VEILPOST_SECRET_KEY": secrets.token_urlsafe(32),  # shared by the nodes
        "VEILPOST_AUTH_AUDIENCE": AUDIENCE,
        "VEILPOST_LOG_LEVEL": "WARNING",
        # The load test publishes 4,000 envelopes as fast as it can.
        "VEILPOST_PUBLISH_RATE": "100000",
        "VEILPOST_PUBLISH_BURST": "100000",
    }
    nodes: list[Node] = []
    try:
        migrate(env, timeout=120)
        for name in ("A", "B"):
            log = logs / f"node-{name}.log"
            port, process = start_daphne(env, log)
            nodes.append(Node(name, port, process, log))
        for node in nodes:
            _wait_healthy(node)
        yield Cluster(nodes[0], nodes[1], database, redis_url, nodes)
    finally:
        stop([node.process for node in nodes])
        drop_database(admin, database)
        admin.close()


# --- A client over a real WebSocket ---------------------------------------------------------


class Client:
    """One /ws/v1 connection to a node."""

    def __init__(self, ws: ClientConnection, challenge: dict[str, Any]) -> None:
        self.ws = ws
        self.challenge = challenge

    @classmethod
    async def open(cls, node: Node) -> Client:
        ws = await connect(node.ws_url, max_size=None, ping_interval=None)
        client = cls(ws, {})
        client.challenge = await client.receive("challenge")
        return client

    @classmethod
    async def connect(cls, node: Node, device: Device | None = None) -> Client:
        client = await cls.open(node)
        await client.send((device or Device()).auth_frame(client.challenge))
        await client.receive("authenticated")
        return client

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def receive(
        self, expected_type: str | None = None, timeout: float = 10
    ) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        frame: dict[str, Any] = json.loads(raw)
        if expected_type is not None:
            assert frame["type"] == expected_type, frame
        return frame

    async def subscribe(self, topics: dict[str, int]) -> dict[str, Any]:
        await self.send({"type": "subscribe", "topics": topics})
        return await self.receive("subscribed")

    async def publish(self, topic: str, id: str, payload: bytes) -> dict[str, Any]:
        await self.send({"type": "publish", "topic": topic, "id": id, "payload": b64(payload)})
        return await self.receive("ack")

    async def envelopes(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        """Read ``count`` envelope frames, acknowledging them every 100 as a client should."""
        frames: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while len(frames) < count:
                frame = await self.receive(timeout=timeout)
                assert frame["type"] == "envelope", frame
                frames.append(frame)
                if len(frames) % 100 == 0 or len(frames) == count:
                    await self.send(
                        {"type": "received", "topics": {frame["topic"]: frame["sequence"]}}
                    )
        return frames

    async def nothing(self, timeout: float = 0.3) -> None:
        try:
            frame = await asyncio.wait_for(self.ws.recv(), timeout)
        except TimeoutError:
            return
        raise AssertionError(f"expected no frame, got {frame!r}")

    async def close(self) -> None:
        await self.ws.close()


def new_topic() -> tuple[bytes, str]:
    group_id = secrets.token_bytes(16)
    return group_id, group_topic(group_id)


def message(group_id: bytes, text: str) -> bytes:
    return private_message(group_id, ciphertext=text.encode())


def texts(frames: list[dict[str, Any]]) -> list[bytes]:
    """The ciphertexts of envelope frames, to compare what was delivered with what was sent."""
    return [unb64(frame["payload"]) for frame in frames]


def sequences(frames: list[dict[str, Any]]) -> list[int]:
    return [frame["sequence"] for frame in frames]


# --- Tests ------------------------------------------------------------------------------------


async def test_subscriber_on_one_node_receives_what_is_published_on_the_other(
    cluster: Cluster,
) -> None:
    group_id, topic = new_topic()
    subscriber = await Client.connect(cluster.a)
    publisher = await Client.connect(cluster.b)
    try:
        subscribed = await subscriber.subscribe({topic: 0})
        assert subscribed["topics"][topic]["last_sequence"] == 0
        payloads = [message(group_id, f"cross-node {i}") for i in range(20)]
        for i, payload in enumerate(payloads):
            ack = await publisher.publish(topic, f"x{i}", payload)
            assert ack["sequence"] == i + 1 and not ack["duplicate"]
        frames = await subscriber.envelopes(20)
        assert sequences(frames) == list(range(1, 21))
        assert texts(frames) == payloads
        # A retry on the other node after a lost ack: same sequence, nothing delivered twice.
        retry = await Client.connect(cluster.a)
        ack = await retry.publish(topic, "x0", payloads[0])
        assert ack["sequence"] == 1 and ack["duplicate"] is True
        await subscriber.nothing()
        await retry.close()
    finally:
        await subscriber.close()
        await publisher.close()


async def test_reconnecting_to_the_other_node_with_a_cursor_loses_nothing(
    cluster: Cluster,
) -> None:
    group_id, topic = new_topic()
    device = Device()
    publisher = await Client.connect(cluster.b)
    subscriber = await Client.connect(cluster.a, device)
    sent: list[bytes] = []

    async def publish(count: int) -> None:
        for _ in range(count):
            payload = message(group_id, f"m{len(sent) + 1}")
            sent.append(payload)
            ack = await publisher.publish(topic, f"r{len(sent)}", payload)
            assert ack["sequence"] == len(sent)

    try:
        await subscriber.subscribe({topic: 0})
        await publish(10)
        first = await subscriber.envelopes(10)
        assert sequences(first) == list(range(1, 11))
        # The client processed only 7 of them when its connection to A dropped.
        await subscriber.close()
        await publish(15)  # published while it is away
        subscriber = await Client.connect(cluster.b, device)  # same installation, other node
        racing = asyncio.create_task(publish(25))  # and publishing races the resubscription
        subscribed = await subscriber.subscribe({topic: 7})
        assert subscribed["topics"][topic]["cursor"] == 7
        await racing
        rest = await subscriber.envelopes(50 - 7)
        assert sequences(rest) == list(range(8, 51))
        assert texts(rest) == sent[7:]
        await subscriber.nothing()
    finally:
        await subscriber.close()
        await publisher.close()


async def test_ordering_under_load_across_nodes(cluster: Cluster) -> None:
    """20 concurrent publishers × 200 envelopes on one topic, half on each node: every
    subscriber, on either node, gets all 4,000 exactly once, in one order, gap-free."""
    publishers_count, per_publisher = 20, 200
    total = publishers_count * per_publisher
    group_id, topic = new_topic()
    nodes = [cluster.a, cluster.b]
    subscribers = [await Client.connect(node) for node in nodes]
    publishers = [await Client.connect(nodes[i % 2]) for i in range(publishers_count)]
    try:
        for subscriber in subscribers:
            await subscriber.subscribe({topic: 0})
        receiving = [asyncio.create_task(s.envelopes(total, timeout=150)) for s in subscribers]

        async def run(index: int, client: Client) -> list[tuple[int, bytes]]:
            # Pipelined: all frames out, then the acks, which come back in order.
            payloads = [message(group_id, f"p{index}-{n}") for n in range(per_publisher)]
            for n, payload in enumerate(payloads):
                await client.send(
                    {
                        "type": "publish",
                        "topic": topic,
                        "id": f"p{index}-{n}",
                        "payload": b64(payload),
                    }
                )
            acks = [await client.receive("ack", timeout=150) for _ in payloads]
            return [(ack["sequence"], payload) for ack, payload in zip(acks, payloads, strict=True)]

        started = time.monotonic()
        results = await asyncio.gather(*(run(i, c) for i, c in enumerate(publishers)))
        published = time.monotonic() - started
        delivered = await asyncio.gather(*receiving)
        elapsed = time.monotonic() - started

        by_sequence: dict[int, bytes] = {}
        for acked in results:
            own = [sequence for sequence, _ in acked]
            assert own == sorted(own), "one publisher's envelopes keep their order"
            for sequence, payload in acked:
                assert sequence not in by_sequence, f"sequence {sequence} given twice"
                by_sequence[sequence] = payload
        assert sorted(by_sequence) == list(range(1, total + 1))
        expected = [by_sequence[s] for s in range(1, total + 1)]
        for frames in delivered:
            assert sequences(frames) == list(range(1, total + 1))
            assert texts(frames) == expected
        for subscriber in subscribers:
            await subscriber.nothing()
        print(f"\n{total} envelopes published in {published:.1f} s, delivered in {elapsed:.1f} s")
    finally:
        for client in subscribers + publishers:
            await client.close()


async def test_challenges_cannot_be_replayed_across_nodes(cluster: Cluster) -> None:
    device = Device()
    # WebSocket: an answer given on node A, replayed on a socket of node B.
    first = await Client.open(cluster.a)
    answer = device.auth_frame(first.challenge)
    await first.send(answer)
    await first.receive("authenticated")
    other = await Client.open(cluster.b)
    try:
        await other.send(answer)
        error = await other.receive("error")
        assert error["code"] == "unknown_challenge", error
        fresh = await other.receive("challenge")  # the socket is unharmed: it may try again
        await other.send(device.auth_frame(fresh))
        assert (await other.receive("authenticated"))["installation_id"] == device.installation_id
    finally:
        await first.close()
        await other.close()

    # REST: a challenge from node A answered once on node B (nodes share state) ...
    challenge = _post(cluster.a, "/api/v1/auth/challenge", {})[1]
    body = {
        "nonce": challenge["nonce"],
        "public_key": b64(device.public_key),
        "signature": b64(device.answer(unb64(challenge["nonce"]), challenge["audience"])),
    }
    status, token = _post(cluster.b, "/api/v1/auth/token", body)
    assert status == 201, token
    assert token["installation_id"] == device.installation_id
    # ... and replayed on either node: refused.
    for node in (cluster.a, cluster.b):
        status, error = _post(node, "/api/v1/auth/token", body)
        assert (status, error["code"]) == (401, "challenge_used"), error


def _post(node: Node, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        node.http_url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
