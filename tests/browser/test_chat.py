"""The web chat end to end: real Chromium profiles, a real relay, a real echo agent.

Each browser context is one profile (its own IndexedDB, hence its own identity). The tests
print the page's time to ready (cold and warm) and the send → receive latency between two
browsers; docs/performance.md records them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from veilpost.agent import Agent, MessageContext
from veilpost.client.storage import new_key

from .conftest import ChatRelay, screenshot_path

pytestmark = pytest.mark.asyncio

READY_TIMEOUT_MS = 90_000
WAIT_MS = 30_000


class Person:
    """One browser profile with the chat open."""

    def __init__(self, name: str, context: Any, page: Any) -> None:
        self.name = name
        self.context = context
        self.page = page
        self.inbox_id = ""
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    async def ready(self) -> float:
        started = time.perf_counter()
        await self.page.wait_for_selector('[data-testid="ready"]', timeout=READY_TIMEOUT_MS)
        elapsed = time.perf_counter() - started
        self.inbox_id = (await self.page.inner_text('[data-testid="my-inbox-id"]')).strip()
        return elapsed

    async def open(self, url: str) -> float:
        started = time.perf_counter()
        await self.page.goto(url)
        await self.ready()
        return time.perf_counter() - started

    async def set_name(self, name: str) -> None:
        field = self.page.locator('[data-testid="my-name"]')
        await field.fill(name)
        await field.press("Enter")

    async def start_dm(self, inbox_id: str) -> None:
        await self.page.click('[data-testid="new-chat"]')
        await self.page.fill('[data-testid="dm-recipient"]', inbox_id)
        await self.page.click('[data-testid="dm-start"]')
        await self.page.wait_for_selector('[data-testid="conversation-title"]', timeout=WAIT_MS)

    async def create_group(self, name: str, members: list[str]) -> None:
        await self.page.click('[data-testid="new-chat"]')
        await self.page.click('[data-testid="tab-group"]')
        await self.page.fill('[data-testid="group-name"]', name)
        await self.page.fill('[data-testid="group-members"]', "\n".join(members))
        await self.page.click('[data-testid="group-create"]')
        title = self.page.locator('[data-testid="conversation-title"]', has_text=name)
        await title.wait_for(timeout=WAIT_MS)

    async def open_conversation(self, title_part: str) -> None:
        item = self.page.locator('[data-testid="conversation"]', has_text=title_part).first
        await item.wait_for(timeout=WAIT_MS)
        await item.click()

    async def send(self, text: str) -> None:
        await self.page.fill('[data-testid="composer"]', text)
        await self.page.click('[data-testid="send-button"]')

    async def wait_text(self, text: str, timeout: int = WAIT_MS) -> None:
        await self.page.locator('[data-testid="message-text"]', has_text=text).first.wait_for(
            timeout=timeout
        )

    async def texts(self) -> list[str]:
        return [
            t.strip()
            for t in await self.page.locator('[data-testid="message-text"]').all_inner_texts()
        ]


MakePerson = Callable[[str], Awaitable[Person]]


@pytest_asyncio.fixture
async def make_person(browser: Any, chat_relay: ChatRelay) -> AsyncIterator[MakePerson]:
    """Opens a browser profile (a context of its own) per call; all closed after the test."""
    opened: list[Person] = []

    async def make(name: str) -> Person:
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        person = Person(name, context, await context.new_page())
        opened.append(person)
        return person

    yield make
    for person in opened:
        await person.context.close()


@pytest_asyncio.fixture
async def echo_agent(chat_relay: ChatRelay, tmp_path: Path) -> AsyncIterator[Agent]:
    agent = Agent(
        db_path=str(tmp_path / "echo.sqlite3"), db_key=new_key(), relay_url=chat_relay.url
    )

    @agent.on_text
    async def echo(ctx: MessageContext) -> None:
        await ctx.reply(f"echo: {ctx.text}")

    task = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.ready.wait(), 30)
    try:
        yield agent
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_dm_group_reload_and_xss(
    make_person: MakePerson, chat_relay: ChatRelay, echo_agent: Agent
) -> None:
    alice, bob, carol = [await make_person(n) for n in ("alice", "bob", "carol")]
    cold = await alice.open(chat_relay.url + "/")
    await bob.open(chat_relay.url + "/")
    await carol.open(chat_relay.url + "/")
    print(f"\ntime to ready, cold (first visit): {cold:.2f} s")
    await alice.page.screenshot(path=str(screenshot_path("01-empty")))
    await alice.set_name("Alice")
    await bob.set_name("Bob")

    # A DM, both ways.
    await alice.start_dm(bob.inbox_id)
    await alice.send("hello bob")
    await bob.open_conversation("Alice")
    await bob.wait_text("hello bob")
    await bob.send("hi alice")
    await alice.wait_text("hi alice")
    latencies = []
    for n in range(5):
        started = time.perf_counter()
        await alice.send(f"ping {n}")
        await bob.wait_text(f"ping {n}")
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    print(
        f"send→receive between two browsers: median {latencies[2]:.0f} ms,"
        f" max {latencies[-1]:.0f} ms"
    )
    await alice.page.screenshot(path=str(screenshot_path("02-dm")))

    # A message that is HTML renders as text and runs nothing.
    payload = '<img src=x onerror="window.__pwned=1">'
    await alice.send(payload)
    await bob.wait_text(payload)
    await asyncio.sleep(0.5)
    assert await bob.page.evaluate("window.__pwned") is None
    assert await alice.page.evaluate("window.__pwned") is None
    assert payload in await bob.texts()

    # A group with a third person and the echo agent: everyone sees every message.
    await alice.create_group("Team", [bob.inbox_id, carol.inbox_id, echo_agent.inbox_id])
    await alice.send("hello team")
    await alice.wait_text("echo: hello team")
    for person in (bob, carol):
        await person.open_conversation("Team")
        await person.wait_text("hello team")
        await person.wait_text("echo: hello team")
    await bob.send("bob here")
    await carol.send("carol here")
    for person in (alice, bob, carol):
        for text in ("bob here", "carol here", "echo: bob here", "echo: carol here"):
            await person.wait_text(text)
    await alice.page.screenshot(path=str(screenshot_path("03-group")))

    # Reload: identity and history survive, and the chat goes on.
    inbox = alice.inbox_id
    started = time.perf_counter()
    await alice.page.reload()
    await alice.ready()
    warm = time.perf_counter() - started
    print(f"time to ready, warm (reload): {warm:.2f} s")
    assert alice.inbox_id == inbox
    await alice.open_conversation("Team")
    await alice.wait_text("carol here")
    await alice.send("back after reload")
    await bob.wait_text("back after reload")
    await alice.page.screenshot(path=str(screenshot_path("04-after-reload")))
    for person in (alice, bob, carol):
        assert person.errors == [], person.errors


async def test_operator_sees_no_canary_of_a_browser_conversation(
    make_person: MakePerson, chat_relay: ChatRelay
) -> None:
    """A canary in a text, a group name and an attachment of a browser conversation is in no
    relay table and in nothing the relay received or sent."""
    import base64
    import secrets

    from canary_search import capture_values, database_values, found, texts_of

    canary = "canary-" + secrets.token_hex(12)
    alice, bob = [await make_person(n) for n in ("alice", "bob")]
    await alice.open(chat_relay.url + "/")
    await bob.open(chat_relay.url + "/")
    await alice.create_group(f"group {canary}", [bob.inbox_id])
    await alice.send(f"the secret is {canary}")
    await alice.page.set_input_files(
        '[data-testid="attach-input"]',
        files=[{"name": "note.txt", "mimeType": "text/plain", "buffer": canary.encode() * 20}],
    )
    await alice.page.locator('[data-testid="attachment-name"]', has_text="note.txt").first.wait_for(
        timeout=WAIT_MS
    )
    await bob.open_conversation(f"group {canary}")
    await bob.wait_text(f"the secret is {canary}")
    await bob.page.locator('[data-testid="attachment-name"]', has_text="note.txt").first.wait_for(
        timeout=WAIT_MS
    )
    needle = canary.encode()
    database = list(t for v in database_values(chat_relay.database) for t in texts_of(v))
    captured = list(t for v in capture_values(chat_relay.capture) for t in texts_of(v))
    assert found(b"group:", iter(database)) and found(b"group:", iter(captured))  # controls
    assert found(needle, texts_of(base64.b64encode(b"x" + needle).decode()))
    assert not found(needle, iter(database))
    assert not found(needle, iter(captured))
    assert needle not in chat_relay.log.read_bytes()


async def test_two_tabs_of_one_profile_share_it(
    make_person: MakePerson, chat_relay: ChatRelay, browser: Any
) -> None:
    """Two tabs of the same profile: one worker owns the state (a Web Lock), the other tab
    goes through it; both show new messages, and either can send."""
    alice, bob = [await make_person(n) for n in ("alice", "bob")]
    await alice.open(chat_relay.url + "/")
    await bob.open(chat_relay.url + "/")
    second = Person("alice-tab-2", alice.context, await alice.context.new_page())
    await second.open(chat_relay.url + "/")
    assert second.inbox_id == alice.inbox_id
    await bob.start_dm(alice.inbox_id)
    await bob.send("to both tabs")
    for tab in (alice, second):
        await tab.open_conversation(bob.inbox_id[:8])
        await tab.wait_text("to both tabs")
    await second.send("from the second tab")
    await bob.wait_text("from the second tab")
    await alice.wait_text("from the second tab")
    assert alice.errors == [] and second.errors == []
