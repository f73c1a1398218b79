"""The widget demo: a (fictional) company's page on its own origin that embeds the Veilpost agent
widget with one script tag, talking to an echo agent through a relay.

With the relay running (``./dev serve``, http://127.0.0.1:8000), in another terminal::

    .venv/bin/python examples/widget_demo/serve.py

then open http://localhost:8001/ (another origin than the relay: the widget's chat lives in the
relay's iframe). It starts an echo agent of its own (its database and key in
``examples/widget_demo/.demo/``, demo only: a real agent keeps its key out of the repository),
or uses ``--agent INBOX_ID`` if you run one yourself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import html
import http.server
import logging
import secrets
import threading
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STATE = HERE / ".demo"


def demo_page(relay: str, agent: str) -> bytes:
    """The demo page with the widget's script tag pointing at ``relay`` and ``agent``."""
    text = (HERE / "index.html").read_text(encoding="utf-8")
    text = text.replace("{{RELAY}}", html.escape(relay.rstrip("/"), quote=True))
    return text.replace("{{AGENT}}", html.escape(agent, quote=True)).encode()


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the demo directory, with the page itself filled in."""

    def __init__(self, *args: object, page: bytes, **kwargs: object) -> None:
        self.page = page
        super().__init__(*args, directory=str(HERE), **kwargs)  # type: ignore[arg-type]

    def do_GET(self) -> None:
        if self.path.split("?")[0] in ("/", "/index.html"):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(self.page)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(self.page)
        elif self.path.startswith("/.demo"):
            self.send_error(404)
        else:
            super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        logging.getLogger("widget_demo").debug(format, *args)


def serve_demo(
    relay: str, agent: str, port: int, host: str = "localhost"
) -> http.server.HTTPServer:
    """Serve the demo site on ``host:port`` in a background thread; returns the server."""
    handler = functools.partial(_Handler, page=demo_page(relay, agent))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="widget-demo").start()
    return server


async def _echo_agent(relay: str, started: asyncio.Future[str]) -> None:
    from veilpost.agent import Agent, MessageContext

    STATE.mkdir(exist_ok=True)
    key_file = STATE / "agent.key"
    if not key_file.exists():
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    agent = Agent(
        db_path=str(STATE / "agent.sqlite3"),
        db_key=bytes.fromhex(key_file.read_text().strip()),
        relay_url=relay,
    )

    @agent.on_text
    async def echo(ctx: MessageContext) -> None:
        await ctx.reply(f"echo: {ctx.text}")

    task = asyncio.create_task(agent.run())
    await agent.ready.wait()
    print(f"echo agent {agent.inbox_id} on {relay}", flush=True)
    started.set_result(agent.inbox_id)
    await task


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--relay", default="http://127.0.0.1:8000", help="the relay (default %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8001, help="the demo site's port (default %(default)s)"
    )
    parser.add_argument(
        "--agent", help="an agent's inbox id or 0x address (default: start an echo agent)"
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def run() -> None:
        agent = args.agent
        task = None
        if agent is None:
            started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(_echo_agent(args.relay, started))
            waits: list[asyncio.Future[Any]] = [started, task]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if not started.done():
                task.result()  # raises what stopped the agent before it was ready
            agent = started.result()
        server = serve_demo(args.relay, agent, args.port)
        print(f"demo site on http://localhost:{args.port}/ (Ctrl-C stops it)", flush=True)
        try:
            await (task if task is not None else asyncio.Event().wait())
        finally:
            server.shutdown()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
