"""The asyncio adapter between :class:`veilpost.client.Client` and a relay (layer 5).

:class:`RelayConnection` implements :class:`~veilpost.client.relay.RelayPort`: a WebSocket at
``/ws/v1`` (the ``websockets`` package: ``pip install veilpost[agent]``) for publishing and
delivery, and HTTP (the standard library's ``urllib``, in a thread) for the REST API, with a
bearer token obtained by the same challenge–response (``docs/protocol.md``).

The connection survives the network: when the socket drops it reconnects with exponential
backoff (0.5 s doubling to 30 s, with jitter), authenticates again and resubscribes every topic
after the last sequence the client acknowledged. Publishes waiting for their answer are sent
again on the new socket — safe, because publishing is idempotent by id. Envelopes delivered
twice across a reconnect are skipped by the client's cursors.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, Self

from veilpost.client.errors import EpochConflict, RelayError
from veilpost.client.identity import InstallationKey
from veilpost.client.relay import ClaimedKeyPackage, Envelope, InboxInfo
from veilpost.protocol import auth_message, b64decode, b64encode

__all__ = ["ConnectionState", "RelayConnection", "RelayUnavailable"]

log = logging.getLogger("veilpost.transport")

PUBLISH_TIMEOUT = 30.0
HTTP_TIMEOUT = 30.0
MAX_BACKOFF = 30.0


class RelayUnavailable(RelayError):
    """The relay cannot be reached (connection refused, DNS, timeout)."""

    def __init__(self, message: str) -> None:
        super().__init__("relay_unavailable", message)


def request_parts(
    body: Any, token: str | None, raw: bytes | None
) -> tuple[dict[str, str], bytes | None]:
    """The headers and body of a REST request: JSON, or raw bytes (blobs)."""
    headers = {"Accept": "application/json"}
    data = None
    if raw is not None:
        data, headers["Content-Type"] = raw, "application/octet-stream"
    elif body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers, data


def parse_response(method: str, path: str, status: int, kind: str, content: bytes) -> Any:
    """A REST response's body (JSON, or bytes); :class:`RelayError` for an error status."""
    if kind.startswith("application/json"):
        parsed: Any = json.loads(content) if content else None
    else:
        parsed = content
    if status >= 400:
        error = parsed if isinstance(parsed, dict) else {}
        raise RelayError(
            error.get("code", f"http_{status}"),
            error.get("message", f"{method} {path} answered {status}"),
            status=status,
            extra=error,
        )
    return parsed


class Socket(Protocol):
    """What the connection needs of a WebSocket: text frames in and out, and close.
    ``recv`` raises once the socket is closed."""

    async def send(self, text: str) -> None: ...

    async def recv(self) -> str: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class ConnectionState:
    """``state`` is ``connecting``, ``connected`` or ``disconnected``; ``error`` says why."""

    state: str
    error: str | None = None


def _audience(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme in ("https", "wss") else 80
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


class RelayConnection:
    """A connection to one relay for one installation key; see the module documentation.

    Use :meth:`open` (connects and authenticates, so :attr:`inbox_id` is known), then give it
    to a :class:`~veilpost.client.Client`; :meth:`close` when done.
    """

    #: Seconds of silence from the relay after which a ``ping`` frame is sent; when nothing
    #: arrives for as long again, the connection is taken for dead and made again. ``None``:
    #: the socket itself detects a dead peer (``websockets`` pings at the protocol level; a
    #: browser's WebSocket cannot, so :class:`~veilpost.browser.BrowserRelay` sets this).
    keepalive: float | None = None
    #: The first wait before reconnecting, in seconds (doubled after each failure, to 30 s).
    first_backoff = 0.5

    def __init__(
        self,
        url: str,
        key: InstallationKey,
        *,
        on_state: Callable[[ConnectionState], None] | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise ValueError(f"relay URL {url!r}: expected http(s)://host[:port]")
        secure = parts.scheme in ("https", "wss")
        base = f"{'https' if secure else 'http'}://{parts.netloc}"
        self.http_base = base + "/api/v1"
        self.ws_url = f"{'wss' if secure else 'ws'}://{parts.netloc}/ws/v1"
        self.audience = _audience(url)
        self.key = key
        self.installation_id = key.installation_id
        self.inbox_id = ""
        self.limits: dict[str, Any] = {}
        self._on_state = on_state
        self._ws: Any = None
        self._token: tuple[str, float] | None = None
        self._envelopes: asyncio.Queue[Envelope | None] = asyncio.Queue()
        self._subscriptions: dict[str, int] = {}
        self._pending: dict[str, tuple[asyncio.Future[dict[str, Any]], dict[str, Any]]] = {}
        self._next_ref = 0
        self._connected = asyncio.Event()
        self._closed = False
        self._runner: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._fatal: RelayError | None = None  # the relay refused this key for good
        self._wake = asyncio.Event()  # ends a wait before reconnecting (reconnect_now)

    # -- life cycle -----------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        url: str,
        key: InstallationKey,
        *,
        on_state: Callable[[ConnectionState], None] | None = None,
        timeout: float = 15.0,
    ) -> Self:
        """Connect and authenticate; :class:`RelayUnavailable` if the relay does not answer
        within ``timeout`` seconds, :class:`~veilpost.client.errors.RelayError` if it refuses
        this key."""
        cls._check_dependencies()
        connection = cls(url, key, on_state=on_state)
        connection._ready = asyncio.get_running_loop().create_future()
        connection._runner = asyncio.create_task(connection._run())
        try:
            await asyncio.wait_for(asyncio.shield(connection._ready), timeout)
        except (TimeoutError, RelayError):
            await connection.close()
            if connection._ready.done() and connection._ready.exception() is not None:
                raise connection._ready.exception() from None  # type: ignore[misc]
            raise RelayUnavailable(
                f"the relay at {url} did not answer within {timeout:g} s"
            ) from None
        return connection

    async def close(self) -> None:
        self._closed = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
        for future, _frame in self._pending.values():
            if not future.done():
                future.set_exception(RelayUnavailable("the connection was closed"))

    def reconnect_now(self) -> None:
        """Connect again at once if the connection is down, instead of waiting out the
        backoff (the network is back: a browser's ``online`` event)."""
        self._wake.set()

    async def drop(self) -> None:
        """Close the socket now (the network is gone: a browser's ``offline`` event); the
        connection is made again as after any loss."""
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _state(self, state: str, error: str | None = None) -> None:
        if self._on_state is not None:
            self._on_state(ConnectionState(state, error))

    # -- the two primitives an adapter provides (here: websockets and urllib) ----------------

    @classmethod
    def _check_dependencies(cls) -> None:
        if importlib.util.find_spec("websockets") is None:
            raise RelayError(
                "missing_dependency",
                "the WebSocket transport needs the `websockets` package:"
                " pip install 'veilpost[agent]'",
            )

    async def _open_socket(self) -> Socket:
        """A connected WebSocket to :attr:`ws_url`."""
        import websockets

        return await websockets.connect(  # type: ignore[return-value]
            self.ws_url,
            max_size=None,
            open_timeout=10,
            ping_interval=20,
            compression=None,  # no compression oracle; ciphertext does not compress
        )

    async def _fetch(
        self, method: str, path: str, body: Any, token: str | None, raw: bytes | None
    ) -> tuple[int, Any]:
        """One HTTP request to the REST API: ``(status, parsed body)``; raises
        :class:`~veilpost.client.errors.RelayError` for an error status."""
        return await asyncio.to_thread(self._http, method, path, body, token=token, raw=raw)

    # -- the connection's life ---------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self.first_backoff
        while not self._closed:
            self._wake.clear()  # a reconnect_now() from here on ends the next wait early
            self._state("connecting")
            ws: Socket | None = None
            try:
                ws = await self._open_socket()
                self._ws = ws
                await self._authenticate(ws)
                backoff = self.first_backoff
                # Resend what waited before anything new goes out (keeps the order).
                await self._resume(ws)
                self._connected.set()
                self._state("connected")
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(None)
                while True:
                    self._dispatch(json.loads(await self._receive(ws)))
            except RelayError as exc:
                if exc.code in ("installation_revoked", "bad_signature"):
                    if self._ready is not None and not self._ready.done():
                        self._ready.set_exception(exc)
                    self._state("disconnected", str(exc))
                    self._fail_for_good(exc)
                    return
                error = str(exc)
            except Exception as exc:  # whatever broke the socket (its close too): reconnect
                error = f"{type(exc).__name__}: {exc}"
            finally:
                if ws is not None:
                    with contextlib.suppress(Exception):
                        await ws.close()
            self._connected.clear()
            self._ws = None
            if self._closed:
                return
            self._state("disconnected", error)
            delay = min(backoff, MAX_BACKOFF) * (0.5 + random.random() / 2)
            log.info("relay connection lost (%s); reconnecting in %.1f s", error, delay)
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
                backoff = self.first_backoff  # woken: the network is back
            except TimeoutError:
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def _receive(self, ws: Socket) -> str:
        """The next frame; with :attr:`keepalive` set, a silence is answered by a ping, and a
        silence as long again by :class:`ConnectionError`."""
        if self.keepalive is None:
            return await ws.recv()
        try:
            async with asyncio.timeout(self.keepalive):
                return await ws.recv()
        except TimeoutError:
            await ws.send(json.dumps({"type": "ping"}))
        try:
            async with asyncio.timeout(self.keepalive):
                return await ws.recv()
        except TimeoutError:
            raise ConnectionError(
                f"the relay did not answer a ping within {self.keepalive:g} s"
            ) from None

    def _fail_for_good(self, exc: RelayError) -> None:
        """The relay refused this key for good: every waiting and later call raises it."""
        self._fatal = exc
        self._envelopes.put_nowait(None)  # wakes next_envelope()
        for future, _frame in self._pending.values():
            if not future.done():
                future.set_exception(exc)

    async def _authenticate(self, ws: Any) -> None:
        challenge = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if challenge.get("type") != "challenge":
            raise RelayError("protocol_error", f"expected a challenge, got {challenge!r:.200}")
        nonce = b64decode(challenge["nonce"])
        await ws.send(
            json.dumps(
                {
                    "type": "auth",
                    "nonce": challenge["nonce"],
                    "public_key": b64encode(self.key.public_key),
                    "signature": b64encode(self.key.sign(auth_message(self.audience, nonce))),
                }
            )
        )
        answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if answer.get("type") == "error":
            raise RelayError(answer.get("code", "error"), answer.get("message", ""))
        self.inbox_id = answer["inbox_id"]
        self.limits = answer.get("limits", {})

    async def _resume(self, ws: Any) -> None:
        if self._subscriptions:
            await ws.send(json.dumps({"type": "subscribe", "topics": dict(self._subscriptions)}))
        for ref, (future, frame) in list(self._pending.items()):
            if not future.done():
                await ws.send(json.dumps({**frame, "ref": ref}))

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "envelope":
            self._envelopes.put_nowait(Envelope.from_json(frame))
            return
        ref = frame.get("ref")
        if isinstance(ref, str) and ref in self._pending:
            future, _request = self._pending.pop(ref)
            if not future.done():
                future.set_result(frame)
            return
        if kind == "error":
            log.warning("relay error: %s %s", frame.get("code"), frame.get("message"))

    async def _request(
        self, frame: dict[str, Any], timeout: float = PUBLISH_TIMEOUT
    ) -> dict[str, Any]:
        if self._fatal is not None:
            raise self._fatal
        self._next_ref += 1
        ref = f"r{self._next_ref}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ref] = (future, frame)
        deadline = time.monotonic() + timeout
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
            if self._ws is not None:
                with contextlib.suppress(Exception):  # a dropped socket resends on resume
                    await self._ws.send(json.dumps({**frame, "ref": ref}))
            answer = await asyncio.wait_for(future, max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            raise RelayUnavailable(f"no answer from the relay within {timeout:g} s") from None
        finally:
            self._pending.pop(ref, None)
        if answer.get("type") == "error":
            code = answer.get("code", "error")
            if code == "epoch_conflict":
                raise EpochConflict(
                    answer.get("message", ""),
                    epoch=int(answer.get("epoch", -1)),
                    current_epoch=int(answer.get("current_epoch", -1)),
                )
            raise RelayError(code, answer.get("message", ""), extra=answer)
        return answer

    # -- WebSocket side of the port ---------------------------------------------------------

    async def publish(self, topic: str, publish_id: str, payload: bytes) -> int:
        answer = await self._request(
            {"type": "publish", "topic": topic, "id": publish_id, "payload": b64encode(payload)}
        )
        return int(answer["sequence"])

    async def subscribe(self, cursors: dict[str, int]) -> None:
        if not cursors:
            return
        for topic, cursor in cursors.items():
            self._subscriptions[topic] = max(cursor, self._subscriptions.get(topic, 0))
        await self._request({"type": "subscribe", "topics": dict(cursors)})

    async def unsubscribe(self, topics: list[str]) -> None:
        for topic in topics:
            self._subscriptions.pop(topic, None)
        await self._request({"type": "unsubscribe", "topics": topics})

    async def next_envelope(self) -> Envelope:
        envelope = await self._envelopes.get()
        if envelope is None:
            assert self._fatal is not None
            self._envelopes.put_nowait(None)  # for every later call too
            raise self._fatal
        return envelope

    async def received(self, cursors: dict[str, int]) -> None:
        for topic, sequence in cursors.items():
            if topic in self._subscriptions:
                self._subscriptions[topic] = max(sequence, self._subscriptions[topic])
        if self._ws is not None and self.connected:
            with contextlib.suppress(Exception):
                await self._ws.send(json.dumps({"type": "received", "topics": cursors}))

    # -- REST side ------------------------------------------------------------------------------

    def _http(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        headers, data = request_parts(body, token, raw)
        request = urllib.request.Request(
            self.http_base + path, data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
                content = response.read()
                kind = response.headers.get("Content-Type", "")
                status = response.status
        except urllib.error.HTTPError as exc:
            content, kind, status = exc.read(), exc.headers.get("Content-Type", ""), exc.code
        except (urllib.error.URLError, OSError) as exc:
            raise RelayUnavailable(f"{method} {path}: {exc}") from None
        return status, parse_response(method, path, status, kind, content)

    async def _token_now(self) -> str:
        if self._token is not None and self._token[1] > time.time() + 60:
            return self._token[0]
        _status, challenge = await self._fetch("POST", "/auth/challenge", None, None, None)
        nonce = b64decode(challenge["nonce"])
        signature = self.key.sign(auth_message(self.audience, nonce))
        _status, answer = await self._fetch(
            "POST",
            "/auth/token",
            {
                "nonce": challenge["nonce"],
                "public_key": b64encode(self.key.public_key),
                "signature": b64encode(signature),
            },
            None,
            None,
        )
        # The relay's clock decides; keep a margin of our own.
        self._token = (answer["token"], time.time() + 3000)
        self.inbox_id = self.inbox_id or answer["inbox_id"]
        return str(answer["token"])

    async def rest(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None
    ) -> Any:
        """An authenticated REST call; the token is renewed when it expired."""
        for attempt in range(2):
            token = await self._token_now()
            try:
                _status, parsed = await self._fetch(method, path, body, token, raw)
                return parsed
            except RelayError as exc:
                if exc.code in ("token_expired", "invalid_token") and attempt == 0:
                    self._token = None
                    continue
                raise
        raise AssertionError("unreachable")

    async def history(
        self, topic: str, after: int, limit: int = 100
    ) -> tuple[list[Envelope], bool]:
        quoted = urllib.parse.quote(topic, safe="")
        page = await self.rest("GET", f"/topics/{quoted}/envelopes?after={after}&limit={limit}")
        envelopes = [Envelope.from_json({**e, "topic": topic}) for e in page["envelopes"]]
        return envelopes, bool(page["has_more"])

    async def upload_key_packages(self, packages: list[tuple[bytes, bool]]) -> None:
        await self.rest(
            "POST",
            "/key-packages",
            {
                "key_packages": [
                    {"key_package": b64encode(kp), "last_resort": lr} for kp, lr in packages
                ]
            },
        )

    async def key_package_count(self) -> tuple[int, bool]:
        answer = await self.rest("GET", "/key-packages/count")
        return int(answer["remaining"]), bool(answer["last_resort"])

    async def claim_key_packages(self, inbox_id: str) -> list[ClaimedKeyPackage]:
        answer = await self.rest("POST", f"/inboxes/{inbox_id}/key-packages/claim")
        return [
            ClaimedKeyPackage(
                row["installation_id"],
                None if row["key_package"] is None else b64decode(row["key_package"]),
                bool(row["last_resort"]),
            )
            for row in answer["key_packages"]
        ]

    async def inbox(self, inbox_id: str) -> InboxInfo:
        answer = await self.rest("GET", f"/inboxes/{inbox_id}")
        installations = tuple(
            row["installation_id"]
            for row in answer.get("installations", [])
            if row.get("revoked_at") is None
        )
        return InboxInfo(
            inbox_id=answer["inbox_id"],
            installations=installations,
            latest_record_version=answer.get("identity_record_version"),
            addresses=tuple(
                row["address"] if isinstance(row, dict) else row
                for row in answer.get("addresses", [])
            ),
        )

    async def identity_record(
        self, inbox_id: str, version: int | None
    ) -> tuple[int, bytes, bytes, bytes]:
        query = "" if version is None else f"?version={version}"
        answer = await self.rest("GET", f"/inboxes/{inbox_id}/identity-record{query}")
        return (
            int(answer["version"]),
            b64decode(answer["record"]),
            b64decode(answer["signature"]),
            b64decode(answer["signer_public_key"]),
        )

    async def put_identity_record(
        self, inbox_id: str, version: int, record: bytes, signature: bytes
    ) -> None:
        await self.rest(
            "PUT",
            f"/inboxes/{inbox_id}/identity-record",
            {"version": version, "record": b64encode(record), "signature": b64encode(signature)},
        )

    async def add_installation(self, public_key: bytes) -> None:
        try:
            await self.rest("POST", "/installations", {"public_key": b64encode(public_key)})
        except RelayError as exc:
            if exc.code != "installation_exists":
                raise

    async def lookup_address(self, address: str) -> tuple[str, bytes, int] | None:
        try:
            answer = await self.rest("GET", f"/addresses/{address}")
        except RelayError as exc:
            if exc.code == "unknown_address":
                return None
            raise
        return answer["inbox_id"], b64decode(answer["signature"]), int(answer["issued_at"])

    async def bind_address(self, address: str, signature: bytes, issued_at: int) -> None:
        await self.rest(
            "PUT",
            f"/inboxes/{self.inbox_id}/address",
            {"address": address, "signature": b64encode(signature), "issued_at": issued_at},
        )

    async def put_blob(self, data: bytes) -> str:
        answer = await self.rest("POST", "/blobs", raw=data)
        return str(answer["id"])

    async def get_blob(self, blob_id: str) -> bytes:
        data = await self.rest("GET", f"/blobs/{blob_id}")
        if not isinstance(data, bytes):
            raise RelayError("invalid_blob", "the relay answered a blob request with JSON")
        return data

    async def conversations(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = "?limit=100" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
            page = await self.rest("GET", f"/conversations{query}")
            rows += page["conversations"]
            cursor = page.get("next_cursor")
            if not cursor:
                return rows

    async def set_read_cursor(self, topic: str, sequence: int) -> None:
        quoted = urllib.parse.quote(topic, safe="")
        await self.rest("PUT", f"/conversations/{quoted}/read-cursor", {"sequence": sequence})
