"""The ``veilpost`` command: identities, conversations and messages from a terminal; agents.

Every command works on one profile: an encrypted database (``--db``, or ``VEILPOST_DB_PATH``;
default ``~/.local/share/veilpost/profile.sqlite3``) opened with ``VEILPOST_DB_KEY`` (64 hex
characters; ``veilpost keygen`` makes one), against one relay (``--relay`` or
``VEILPOST_RELAY_URL``; default ``http://127.0.0.1:8000``). The profile keeps the installation
key, so the identity survives.

Exit codes: 0 success, 1 the operation failed (the message says why), 2 wrong usage,
3 the relay cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from veilpost.agent import Agent, AgentConfigError
from veilpost.client.client import Client, Message
from veilpost.client.errors import ClientError, RelayError
from veilpost.client.storage import StoreError, new_key
from veilpost.protocol import installation_id, is_installation_id
from veilpost.transport import RelayUnavailable

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
DEFAULT_DB = Path.home() / ".local" / "share" / "veilpost" / "profile.sqlite3"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="veilpost",
        description="End-to-end-encrypted messaging for people and agents (MLS, RFC 9420).",
        epilog="Environment: VEILPOST_RELAY_URL, VEILPOST_DB_PATH, VEILPOST_DB_KEY (required),"
        " VEILPOST_KEY, VEILPOST_WALLET_KEY. Exit codes: 0 ok, 1 failed, 2 usage,"
        " 3 relay unreachable.",
    )
    parser.add_argument("--relay", help="relay URL (default: $VEILPOST_RELAY_URL or local)")
    parser.add_argument("--db", help="profile database (default: $VEILPOST_DB_PATH or ~/.local)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("keygen", help="print a new random database key (for VEILPOST_DB_KEY)")
    identity = commands.add_parser("identity", help="create or show this profile's identity")
    identity.add_argument("action", choices=["create", "show"], nargs="?", default="show")

    device = commands.add_parser(
        "device",
        help="add another device (installation) to this inbox",
        description="On the new device: `device new INBOX_ID` (makes its key, does not connect:"
        " a key that connects first becomes a new inbox) prints its public key. On a device of the"
        " inbox: `device admit KEY` admits it and, once the new device has connected once,"
        " adds it to every conversation (`device sync` does that again later).",
    )
    device.add_argument("action", choices=["new", "admit", "sync"])
    device.add_argument(
        "public_key",
        nargs="?",
        help="new: the inbox id to join; admit: the new device's public key (hex)",
    )
    device.add_argument(
        "--wait", type=float, default=60, metavar="SECONDS", help="admit: wait for the device"
    )

    commands.add_parser("conversations", help="list conversations")

    send = commands.add_parser("send", help="send a message (a DM to an inbox or 0x address)")
    send.add_argument("to", help="inbox id, 0x address, or a conversation id (dm:… / group:…)")
    send.add_argument("text", help="the message")
    send.add_argument(
        "--wait", type=float, default=0, metavar="SECONDS", help="then print replies for a while"
    )

    messages = commands.add_parser("messages", help="print a conversation's history")
    messages.add_argument("conversation", help="conversation id (see `conversations`)")
    messages.add_argument("--limit", type=int, default=20)
    messages.add_argument("--oldest-first", action="store_true")

    listen = commands.add_parser("listen", help="print incoming messages until Ctrl-C")
    listen.add_argument("--count", type=int, default=0, help="stop after this many messages")
    listen.add_argument("--timeout", type=float, default=0, help="stop after this many seconds")

    group = commands.add_parser("group", help="create a group")
    group.add_argument("action", choices=["create"])
    group.add_argument("members", nargs="*", help="inbox ids or 0x addresses")
    group.add_argument("--name", default="")
    group.add_argument("--description", default="")

    run = commands.add_parser("run", help="run an agent file (it defines `agent = Agent...`)")
    run.add_argument("file", type=Path)

    commands.add_parser(
        "mcp",
        help="serve this profile's messaging as MCP tools on stdin/stdout (for an MCP host)",
        description="An MCP server over stdio (needs veilpost[mcp]): tools to list"
        " conversations, read messages, send, start a DM, create a group and wait for new"
        " messages. stdout carries only MCP; logs go to stderr. See docs/mcp.md.",
    )
    return parser


def _agent(args: argparse.Namespace) -> Agent:
    env = dict(os.environ)
    if args.relay:
        env["VEILPOST_RELAY_URL"] = args.relay
    db = args.db or env.get("VEILPOST_DB_PATH") or str(DEFAULT_DB)
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    env["VEILPOST_DB_PATH"] = db
    return Agent.from_env(env)


def _line(client: Client, message: Message) -> str:
    who = "me" if message.sender_inbox_id == client.inbox_id else message.sender_inbox_id[:12]
    stamp = time.strftime("%H:%M:%S", time.localtime(message.sent_at_ns / 1e9))
    return f"{stamp} [{message.conversation_id}] {who}: {message.text}"


async def _with_client(args: argparse.Namespace) -> int:
    agent = _agent(args)
    if args.command == "device" and args.action == "new":
        if not args.public_key or not is_installation_id(args.public_key):
            print("error: device new needs the inbox id to join (see `identity`)", file=sys.stderr)
            await agent.stop()
            return EXIT_USAGE
        agent.expect_inbox(args.public_key)
        key = agent.installation_key()
        print(f"this device's public key: {key.public_key.hex()}")
        print("on a device of your inbox, run: veilpost device admit <that key>", file=sys.stderr)
        await agent.stop()
        return EXIT_OK
    await agent.start()
    client = agent.client
    await client.sync()  # commands see every conversation and message already delivered
    processing = asyncio.create_task(client.run())
    try:
        return await _command(args, agent, client)
    finally:
        processing.cancel()
        await agent.stop()


async def _print_incoming(client: Client, count: int, timeout: float) -> int:
    seen = 0
    deadline = None if timeout <= 0 else asyncio.get_running_loop().time() + timeout
    while count <= 0 or seen < count:
        remaining = None if deadline is None else deadline - asyncio.get_running_loop().time()
        if remaining is not None and remaining <= 0:
            break
        try:
            event = await asyncio.wait_for(client.events.get(), remaining)
        except TimeoutError:
            break
        message = event.message
        if event.kind == "message" and message and message.sender_inbox_id != client.inbox_id:
            print(_line(client, message), flush=True)
            seen += 1
        elif event.kind == "conversation":
            print(f"joined {event.conversation_id}", flush=True)
    return seen


async def _command(args: argparse.Namespace, agent: Agent, client: Client) -> int:
    if args.command == "identity":
        print(f"inbox id:        {client.inbox_id}")
        print(f"installation id: {client.installation_id}")
        print(f"public key:      {client.key.public_key.hex()}")
        record = await client.identity(client.inbox_id, refresh=True)
        for address in record.address_list():
            print(f"address:         {address}")
        return EXIT_OK
    if args.command == "device":
        return await _device(args, client)
    if args.command == "conversations":
        conversations = client.conversations()
        if not conversations:
            print("no conversations yet")
        for row in conversations:
            label = row.name or (row.peer_inbox_id or "")
            state = "" if row.active else " (left)"
            print(f"{row.id}\t{row.kind.name.lower()}\t{len(row.members)} members\t{label}{state}")
        return EXIT_OK
    if args.command == "send":
        target = args.to
        if not target.startswith(("dm:", "group:")):
            target = (await client.new_dm(target)).id
        message = await client.send(target, args.text)
        if message.status != "sent":
            queued = client.is_queued(message)
            print(
                f"error: not sent ({message.error})"
                + (
                    "; it stays queued and goes out the next time this profile connects"
                    " (do not send it again)"
                    if queued
                    else ""
                ),
                file=sys.stderr,
            )
            return EXIT_FAILED
        print(f"sent {message.id} to {target}", file=sys.stderr)
        if args.wait > 0:
            await _print_incoming(client, 0, args.wait)
        return EXIT_OK
    if args.command == "messages":
        history = client.messages(
            args.conversation, limit=args.limit, newest_first=not args.oldest_first
        )
        for item in history:
            print(_line(client, item))
        return EXIT_OK
    if args.command == "listen":
        print(f"listening as {client.inbox_id} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        await _print_incoming(client, args.count, args.timeout)
        return EXIT_OK
    if args.command == "group":
        created = await client.new_group(args.members, name=args.name, description=args.description)
        print(created.id)
        return EXIT_OK
    raise AssertionError(args.command)


async def _device(args: argparse.Namespace, client: Client) -> int:
    if args.action == "sync":
        await client.sync_installations()
        print("every conversation has every device of its members that can be added")
        return EXIT_OK
    try:
        public_key = bytes.fromhex(args.public_key or "")
        if len(public_key) != 32:
            raise ValueError
    except ValueError:
        print("error: device admit needs the new device's public key (64 hex)", file=sys.stderr)
        return EXIT_USAGE
    await client.admit_installation(public_key)
    print(f"admitted {installation_id(public_key)}", file=sys.stderr)
    deadline = time.monotonic() + args.wait
    while client.missing_from(public_key):
        if time.monotonic() > deadline:
            print(
                "the device has not connected yet; once it has, run `veilpost device sync`"
                " here (or start this profile again)",
                file=sys.stderr,
            )
            return EXIT_OK
        print("waiting for the device to connect once …", file=sys.stderr)
        await asyncio.sleep(3)
        await client.sync_installations(own_only=True)
    print("the device is in every conversation of this inbox")
    return EXIT_OK


def _run_file(path: Path) -> int:
    if not path.is_file():
        print(f"error: no agent file {path}", file=sys.stderr)
        return EXIT_USAGE
    spec = importlib.util.spec_from_file_location("veilpost_agent_file", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))
    spec.loader.exec_module(module)
    agent: Any = getattr(module, "agent", None)
    if not isinstance(agent, Agent):
        print(f"error: {path} defines no `agent = Agent(...)`", file=sys.stderr)
        return EXIT_USAGE
    agent.run_forever()
    return EXIT_OK


def _serve_mcp(args: argparse.Namespace) -> int:
    try:
        from veilpost.mcp.messaging import serve_stdio
    except ImportError as exc:
        print(
            f"error: veilpost mcp needs the mcp SDK ({exc}): pip install 'veilpost[mcp]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    agent = _agent(args)  # configuration errors before the host starts talking MCP
    asyncio.run(serve_stdio(agent))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """The console script's entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "keygen":
        print(new_key().hex())
        return EXIT_OK
    try:
        if args.command == "run":
            if args.relay:
                os.environ["VEILPOST_RELAY_URL"] = args.relay
            if args.db:
                os.environ["VEILPOST_DB_PATH"] = args.db
            return _run_file(args.file)
        if args.command == "mcp":
            return _serve_mcp(args)
        return asyncio.run(_with_client(args))
    except KeyboardInterrupt:
        return EXIT_OK
    except AgentConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RelayUnavailable as exc:
        print(f"error: cannot reach the relay: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except (ClientError, RelayError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
