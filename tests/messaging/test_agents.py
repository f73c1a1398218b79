"""Agents (the SDK) and the `veilpost` command against a real relay."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from veilpost.agent import Agent, MessageContext
from veilpost.client.storage import Store, new_key

from .conftest import Relay
from .messaging_support import Peer, open_peer

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "veilpost.cli"]


def _env(relay_url: str, db: Path, db_key: bytes) -> dict[str, str]:
    return {
        **os.environ,
        "VEILPOST_RELAY_URL": relay_url,
        "VEILPOST_DB_PATH": str(db),
        "VEILPOST_DB_KEY": db_key.hex(),
        "PYTHONUNBUFFERED": "1",
    }


@pytest.mark.asyncio
async def test_two_agents_exchange_dms_both_ways(relay: Relay, tmp_path: Path) -> None:
    agents = [
        Agent(db_path=str(tmp_path / f"{n}.sqlite3"), db_key=new_key(), relay_url=relay.url)
        for n in ("one", "two")
    ]
    heard: dict[int, list[str]] = {0: [], 1: []}
    for index, agent in enumerate(agents):

        async def on_text(ctx: MessageContext, index: int = index) -> None:
            heard[index].append(ctx.text)
            if not ctx.text.startswith("re:"):
                await ctx.reply(f"re: {ctx.text}")

        agent.on_text(on_text)
    tasks = [asyncio.create_task(agent.run()) for agent in agents]
    try:
        for agent in agents:
            await asyncio.wait_for(agent.ready.wait(), 20)
        one, two = agents
        dm = await one.client.new_dm(two.inbox_id)
        await one.client.send(dm.id, "ping from one")
        await _until(lambda: heard[0] == ["re: ping from one"])
        assert heard[1] == ["ping from one"]
        await two.client.send(f"dm:{one.inbox_id}", "ping from two")
        await _until(lambda: "re: ping from two" in heard[1])
        assert heard[0] == ["re: ping from one", "ping from two"]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _until(predicate, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def _start_echo_agent(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    out = log.open("ab")
    process = subprocess.Popen(
        [*CLI, "run", str(ROOT / "examples" / "echo_agent.py")],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        found = re.findall(r"echo agent ready: inbox ([0-9a-f]{32})", log.read_text())
        if found:
            return process, found[-1]
        assert process.poll() is None, log.read_text()
        assert asyncio.get_running_loop().time() < deadline, log.read_text()
        await asyncio.sleep(0.1)


@pytest.mark.asyncio
async def test_cli_user_messages_the_echo_agent(relay: Relay, tmp_path: Path) -> None:
    agent_env = _env(relay.url, tmp_path / "agent.sqlite3", new_key())
    process, inbox = await _start_echo_agent(agent_env, tmp_path / "agent.log")
    try:
        user_env = _env(relay.url, tmp_path / "user.sqlite3", new_key())
        result = await asyncio.to_thread(
            subprocess.run,
            [*CLI, "send", inbox, "hello agent", "--wait", "8"],
            env=user_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert "echo: hello agent" in result.stdout, (result.stdout, result.stderr)
        listing = subprocess.run(
            [*CLI, "conversations"], env=user_env, capture_output=True, text=True, timeout=60
        )
        assert f"dm:{inbox}" in listing.stdout
        history = subprocess.run(
            [*CLI, "messages", f"dm:{inbox}", "--oldest-first"],
            env=user_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "me: hello agent" in history.stdout and "echo: hello agent" in history.stdout
    finally:
        process.terminate()
        process.wait(10)


def test_cli_errors_read_well(tmp_path: Path) -> None:
    env = _env("http://127.0.0.1:9", tmp_path / "x.sqlite3", new_key())
    unreachable = subprocess.run([*CLI, "conversations"], env=env, capture_output=True, text=True)
    assert unreachable.returncode == 3
    assert "cannot reach the relay" in unreachable.stderr
    env.pop("VEILPOST_DB_KEY")
    missing = subprocess.run([*CLI, "conversations"], env=env, capture_output=True, text=True)
    assert missing.returncode == 2 and "VEILPOST_DB_KEY" in missing.stderr
    usage = subprocess.run([*CLI, "frobnicate"], env=env, capture_output=True, text=True)
    assert usage.returncode == 2
    helped = subprocess.run([*CLI, "--help"], env=env, capture_output=True, text=True)
    assert helped.returncode == 0 and "send" in helped.stdout


@pytest.mark.asyncio
async def test_agent_killed_and_restarted_loses_nothing(
    relay: Relay, peers: list[Peer], tmp_path: Path
) -> None:
    db_key = new_key()
    db = tmp_path / "agent.sqlite3"
    env = _env(relay.url, db, db_key)
    log = tmp_path / "agent.log"
    process, inbox = await _start_echo_agent(env, log)
    user = await open_peer(relay.url, "user", tmp_path)
    peers.append(user)
    dm = await user.client.new_dm(inbox)
    await user.client.send(dm.id, "before 1")
    await user.wait_for(lambda p: "echo: before 1" in p.texts(dm.id), what="first echo")
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    for n in range(3):
        message = await user.client.send(dm.id, f"while down {n}")
        assert message.status == "sent"
    process, again = await _start_echo_agent(env, log)
    try:
        assert again == inbox
        expected = ["before 1"] + [f"while down {n}" for n in range(3)]
        await user.wait_for(
            lambda p: all(f"echo: {t}" in p.texts(dm.id) for t in expected), 30, "all echoes"
        )
        await user.client.send(dm.id, "after restart")
        await user.wait_for(lambda p: "echo: after restart" in p.texts(dm.id), what="after")
    finally:
        process.terminate()
        process.wait(10)
    texts = user.texts(dm.id)
    assert len(texts) == len(set(texts)) == 10, texts
    store = Store.open(str(db), db_key)
    try:
        assert store.count_messages(f"dm:{user.inbox_id}") == 10
    finally:
        store.close()


@pytest.mark.asyncio
async def test_cli_adds_a_second_device(relay: Relay, tmp_path: Path) -> None:
    agent_env = _env(relay.url, tmp_path / "agent.sqlite3", new_key())
    process, inbox = await _start_echo_agent(agent_env, tmp_path / "agent.log")
    laptop = _env(relay.url, tmp_path / "laptop.sqlite3", new_key())
    phone = _env(relay.url, tmp_path / "phone.sqlite3", new_key())

    def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=90)

    try:
        assert cli(laptop, "send", inbox, "from the laptop", "--wait", "5").returncode == 0
        laptop_inbox = re.findall(r"inbox id: +(\w+)", cli(laptop, "identity").stdout)[0]
        assert cli(phone, "device", "new").returncode == 2  # which inbox?
        made = cli(phone, "device", "new", laptop_inbox)
        assert made.returncode == 0, made.stderr
        key = re.findall(r"public key: ([0-9a-f]{64})", made.stdout)[0]
        admit = subprocess.Popen(
            [*CLI, "device", "admit", key, "--wait", "60"],
            env=laptop,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        await asyncio.sleep(3)  # admitted by now; the phone connects once
        first = await asyncio.to_thread(cli, phone, "identity")
        assert first.returncode == 0, first.stderr
        out, err = await asyncio.to_thread(admit.communicate, timeout=90)
        assert admit.returncode == 0, err
        assert "in every conversation" in out, (out, err)
        shown = await asyncio.to_thread(cli, phone, "messages", f"dm:{inbox}", "--oldest-first")
        assert shown.returncode == 0, shown.stderr
        # MLS gives a new device the messages from when it joined, not the history before.
        assert "from the laptop" not in shown.stdout
        laptop_identity = cli(laptop, "identity").stdout
        assert re.findall(r"inbox id: +(\w+)", first.stdout) == re.findall(
            r"inbox id: +(\w+)", laptop_identity
        )
        sent = await asyncio.to_thread(
            cli, phone, "send", f"dm:{inbox}", "from the phone", "--wait", "5"
        )
        assert sent.returncode == 0, sent.stderr
        assert "echo: from the phone" in sent.stdout
        history = cli(laptop, "messages", f"dm:{inbox}", "--oldest-first").stdout
        assert "from the phone" in history and "echo: from the phone" in history
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.asyncio
async def test_a_message_whose_handler_never_finished_is_handled_after_a_restart(
    relay: Relay, peers: list[Peer], tmp_path: Path
) -> None:
    db, db_key = str(tmp_path / "agent.sqlite3"), new_key()
    started = asyncio.Event()

    async def stuck(ctx: MessageContext) -> None:
        started.set()
        await asyncio.Event().wait()  # the process dies here

    first = Agent(db_path=db, db_key=db_key, relay_url=relay.url)
    first.on_text(stuck)
    task = asyncio.create_task(first.run())
    await asyncio.wait_for(first.ready.wait(), 20)
    inbox = first.inbox_id
    user = await open_peer(relay.url, "user", tmp_path)
    peers.append(user)
    dm = await user.client.new_dm(inbox)
    await user.client.send(dm.id, "handle me")
    await asyncio.wait_for(started.wait(), 20)
    task.cancel()  # "killed" in the middle of the handler
    await asyncio.gather(task, return_exceptions=True)

    handled: list[str] = []
    second = Agent(db_path=db, db_key=db_key, relay_url=relay.url)

    @second.on_text
    async def record(ctx: MessageContext) -> None:
        handled.append(ctx.text)
        await ctx.reply("done")

    task = asyncio.create_task(second.run())
    try:
        await _until(lambda: handled == ["handle me"])
        await user.wait_for(lambda p: "done" in p.texts(dm.id), what="the reply")
        assert second.client.unhandled() == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.asyncio
async def test_a_cancelled_run_leaves_no_waiting_task_behind(relay: Relay, tmp_path: Path) -> None:
    agent = Agent(db_path=str(tmp_path / "a.sqlite3"), db_key=new_key(), relay_url=relay.url)
    task = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.ready.wait(), 30)
    await asyncio.sleep(0.2)  # waiting for events now

    def waiting_on_events() -> list[asyncio.Task[object]]:
        return [
            t
            for t in asyncio.all_tasks()
            if not t.done() and getattr(t.get_coro(), "__qualname__", "") == "Queue.get"
        ]

    assert waiting_on_events()  # the run waits on its event queue ...
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0)
    assert waiting_on_events() == []  # ... and a cancelled run stops waiting
