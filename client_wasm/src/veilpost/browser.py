"""The browser adapter (layer 5): the relay connection and the worker's entry point, for
``veilpost`` running in Pyodide inside the crypto worker (``static/chat/worker.js``).

Only this module touches the browser: :class:`BrowserRelay` is the asyncio transport's
:class:`~veilpost.transport.RelayConnection` with its two primitives replaced — the browser's
``WebSocket`` for the socket and ``fetch`` for the REST API — so reconnects, resubscription
and token renewal are the same code as on CPython. :class:`Worker` is what ``worker.js``
drives: it opens the store (a SQLite file in Pyodide's in-memory file system, which the worker
saves to IndexedDB), connects, starts the client and a :class:`~veilpost.bridge.Bridge`, and
pumps the bridge's events to the page.

Importable only in Pyodide (it imports ``js`` and ``pyodide``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable
from typing import Any

import js  # type: ignore[import-not-found]
from pyodide.ffi import create_proxy, to_js  # type: ignore[import-not-found]

from veilpost.client.client import Client, stored_installation_key
from veilpost.client.errors import RelayError
from veilpost.client.storage import Store
from veilpost.transport import (
    ConnectionState,
    RelayConnection,
    RelayUnavailable,
    parse_response,
    request_parts,
)

__all__ = ["BrowserRelay", "Worker"]

log = logging.getLogger("veilpost.browser")

OPEN_TIMEOUT = 10.0


class _JsSocket:
    """The browser's WebSocket as a :class:`~veilpost.transport.Socket`."""

    def __init__(self, url: str) -> None:
        loop = asyncio.get_running_loop()
        self._frames: asyncio.Queue[str | None] = asyncio.Queue()
        self._opened: asyncio.Future[None] = loop.create_future()
        self._ws = js.WebSocket.new(url)
        self._proxies = [
            create_proxy(self._on_open),
            create_proxy(self._on_message),
            create_proxy(self._on_close),
        ]
        self._ws.onopen, self._ws.onmessage, self._ws.onclose = self._proxies
        self._ws.onerror = self._proxies[2]

    def _on_open(self, _event: Any) -> None:
        if not self._opened.done():
            self._opened.set_result(None)

    def _on_message(self, event: Any) -> None:
        self._frames.put_nowait(str(event.data))

    def _on_close(self, _event: Any) -> None:
        if not self._opened.done():
            self._opened.set_exception(ConnectionError("the WebSocket could not be opened"))
        self._frames.put_nowait(None)

    async def opened(self) -> _JsSocket:
        await asyncio.wait_for(self._opened, OPEN_TIMEOUT)
        return self

    async def send(self, text: str) -> None:
        if self._ws.readyState != 1:
            raise ConnectionError("the WebSocket is not open")
        self._ws.send(text)

    async def recv(self) -> str:
        frame = await self._frames.get()
        if frame is None:
            self._frames.put_nowait(None)
            raise ConnectionError("the WebSocket closed")
        return frame

    async def close(self) -> None:
        # The close event would come after the proxies are gone: end the waits here instead.
        self._ws.onopen = self._ws.onmessage = self._ws.onclose = self._ws.onerror = None
        with contextlib.suppress(Exception):
            self._ws.close()
        if not self._opened.done():
            self._opened.set_exception(ConnectionError("the WebSocket was closed"))
            self._opened.exception()  # retrieved: nobody may be waiting for it
        self._frames.put_nowait(None)  # recv() raises from now on
        for proxy in self._proxies:
            proxy.destroy()
        self._proxies = []


class BrowserRelay(RelayConnection):
    """The relay connection over the browser's WebSocket and ``fetch``."""

    keepalive = 20.0  # a browser's WebSocket has no protocol pings: send the relay's own

    @classmethod
    def _check_dependencies(cls) -> None:
        return None  # the browser has both

    async def _open_socket(self) -> _JsSocket:
        return await _JsSocket(self.ws_url).opened()

    async def _fetch(
        self, method: str, path: str, body: Any, token: str | None, raw: bytes | None
    ) -> tuple[int, Any]:
        headers, data = request_parts(body, token, raw)
        init: dict[str, Any] = {"method": method, "headers": headers}
        if data is not None:
            init["body"] = to_js(data)
        try:
            response = await js.fetch(
                self.http_base + path, to_js(init, dict_converter=js.Object.fromEntries)
            )
            content = (await response.arrayBuffer()).to_bytes()
        except Exception as exc:  # a network error: fetch rejects with a TypeError
            raise RelayUnavailable(f"{method} {path}: {exc}") from None
        kind = response.headers.get("Content-Type") or ""
        return response.status, parse_response(method, path, response.status, kind, content)


class Worker:
    """The Python side of the crypto worker: one profile, one relay."""

    def __init__(self, post: Callable[[str], None]) -> None:
        self._post = post
        self.store: Store | None = None
        self.client: Client | None = None
        self.bridge: Any = None  # a veilpost.bridge.Bridge once started
        self.relay: BrowserRelay | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._network_proxies: list[Any] = []  # kept alive: JavaScript calls them
        self._dropping: set[asyncio.Future[None]] = set()

    def _emit(self, event: dict[str, Any]) -> None:
        self._post(json.dumps(event))

    def _on_state(self, state: ConnectionState) -> None:
        self._emit({"event": "status", "state": state.state, "error": state.error})

    async def start(self, origin: str, db_path: str, db_key: Any) -> None:
        """Open the store at ``db_path`` with ``db_key`` (bytes, or a JavaScript
        ``Uint8Array``), connect to the relay at ``origin`` and start the client (a new
        profile gets a fresh installation key, kept in the store)."""
        # The interpreter may come from the runtime snapshot every visitor loads (worker.js):
        # reseed the random module (backoff jitter), seeded once when the snapshot was made.
        random.seed()
        key_bytes = db_key.to_bytes() if hasattr(db_key, "to_bytes") else bytes(db_key)
        self.store = Store.open(db_path, key_bytes)
        key = stored_installation_key(self.store)
        self._emit({"event": "progress", "stage": "connecting", "detail": origin})
        self.relay = await BrowserRelay.open(origin, key, on_state=self._on_state)
        self._watch_network(self.relay)
        self.client = Client(key, self.relay.inbox_id, self.store, self.relay)
        await self.client.start(key_packages_in_background=True)
        from veilpost.bridge import Bridge

        self.bridge = Bridge(self.client, origin=origin)
        self._tasks = [
            asyncio.ensure_future(self._process()),
            asyncio.ensure_future(self._pump_events()),
        ]
        self._emit({"event": "progress", "stage": "ready", "detail": self.client.inbox_id})

    def _watch_network(self, relay: BrowserRelay) -> None:
        """The browser knows when the network goes and comes back before any socket does:
        drop the connection at once, and reconnect at once instead of waiting out a backoff."""

        def offline(_event: Any) -> None:
            task = asyncio.ensure_future(relay.drop())
            self._dropping.add(task)
            task.add_done_callback(self._dropping.discard)

        def online(_event: Any) -> None:
            relay.reconnect_now()

        self._network_proxies = [create_proxy(offline), create_proxy(online)]
        js.addEventListener("offline", self._network_proxies[0])
        js.addEventListener("online", self._network_proxies[1])

    async def _process(self) -> None:
        assert self.client is not None
        while True:
            try:
                await self.client.run()
            except RelayError as exc:
                log.warning("processing stopped: %s", exc)
                self._emit({"event": "status", "state": "disconnected", "error": str(exc)})
                if exc.code in ("installation_revoked", "bad_signature"):
                    return
                await asyncio.sleep(1)
            except Exception as exc:  # keep the worker alive, loudly
                log.exception("processing interrupted")
                self._emit({"event": "status", "state": "connected", "error": repr(exc)})
                await asyncio.sleep(1)

    async def _pump_events(self) -> None:
        assert self.bridge is not None
        while True:
            event = await self.bridge.next_event()
            self._emit(event)

    async def handle(self, request_json: str) -> str:
        """Answer one command (JSON in, JSON out; see docs/browser.md)."""
        request = json.loads(request_json)
        if self.bridge is None:
            return json.dumps(
                {
                    "id": request.get("id"),
                    "ok": False,
                    "error": {"code": "not_ready", "message": "the worker is still starting"},
                }
            )
        return json.dumps(await self.bridge.handle(request))

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file, so that the file alone (what the
        worker saves) holds everything."""
        if self.store is not None:
            self.store.checkpoint()
