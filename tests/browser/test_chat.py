"""The web chat end to end: real Chromium profiles, a real relay, a real echo agent.

Each browser context is one profile (its own IndexedDB, hence its own identity). The tests
print the page's time to ready (cold and warm) and the send → receive latency between two
browsers; docs/performance.md records them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from veilpost.agent import Agent

from .conftest import ChatRelay, screenshot_path
from .fake_harness import tiny_png

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
        self.warnings: list[str] = []  # the page's and its worker's console warnings
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if message.type == "warning":
            self.warnings.append(message.text)

    async def ready(self) -> float:
        started = time.perf_counter()
        await self.page.wait_for_selector('[data-testid="ready"]', timeout=READY_TIMEOUT_MS)
        elapsed = time.perf_counter() - started
        # The worker starts from the runtime snapshot made by ./dev setup; it says so when it
        # had to start the long way instead.
        assert not [w for w in self.warnings if "prepared runtime" in w], self.warnings
        self.inbox_id = (await self.page.inner_text('[data-testid="my-inbox-id"]')).strip()
        return elapsed

    async def open(self, url: str) -> float:
        started = time.perf_counter()
        await self.page.goto(url)
        await self.ready()
        return time.perf_counter() - started

    async def screenshot(self, name: str) -> None:
        """Save what the page shows (animations run to their end) as screenshots/NAME.png."""
        await self.page.screenshot(path=str(screenshot_path(name)), animations="disabled")

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


MakePerson = Callable[..., Awaitable[Person]]  # (name, **context options, touch=bool)


@pytest_asyncio.fixture
async def make_person(browser: Any, chat_relay: ChatRelay) -> AsyncIterator[MakePerson]:
    """Opens a browser profile (a context of its own) per call; all closed after the test."""
    opened: list[Person] = []

    async def make(name: str, **options: Any) -> Person:
        if options.get("touch"):
            options = {"has_touch": True, "is_mobile": True, **options}
            options.pop("touch")
        context = await browser.new_context(
            **{"viewport": {"width": 1280, "height": 800}, **options}
        )
        person = Person(name, context, await context.new_page())
        opened.append(person)
        return person

    yield make
    for person in opened:
        await person.context.close()


async def test_dm_group_reload_and_xss(
    make_person: MakePerson, chat_relay: ChatRelay, echo_agent: Agent
) -> None:
    alice, bob, carol = [await make_person(n) for n in ("alice", "bob", "carol")]
    cold = await alice.open(chat_relay.url + "/")
    await bob.open(chat_relay.url + "/")
    await carol.open(chat_relay.url + "/")
    print(f"\ntime to ready, cold (first visit): {cold:.2f} s")
    await alice.screenshot("01-empty")
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
    await alice.screenshot("02-dm")

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
    await alice.screenshot("03-group")

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
    await alice.screenshot("04-after-reload")
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

    # The owner's tab closes: the second tab's worker takes the profile over from the saved
    # state and carries on, both ways.
    await alice.page.close()
    await second.send("after the first tab closed")
    await bob.wait_text("after the first tab closed")
    await bob.send("still reaching you")
    await second.wait_text("still reaching you")
    assert second.errors == []


def message(person: Person, text: str) -> Any:
    """The message item whose text is ``text``."""
    return person.page.locator(
        '[data-testid="message"]',
        has=person.page.locator('[data-testid="message-text"]', has_text=text),
    ).last


async def test_replies_reactions_receipts_images_members_reconnect_phone(
    make_person: MakePerson, chat_relay: ChatRelay
) -> None:
    """The chat's features through the real worker: Alice on a desktop window, Bob on a
    phone-sized one (390 x 844, touch)."""
    alice = await make_person("alice")
    bob = await make_person("bob", viewport={"width": 390, "height": 844}, touch=True)
    await alice.open(chat_relay.url + "/")
    await bob.open(chat_relay.url + "/")
    await alice.set_name("Alice")
    await bob.set_name("Bob")
    await alice.start_dm(bob.inbox_id)
    await alice.send("lunch at noon?")
    await bob.screenshot("10-phone-list")
    await bob.open_conversation("Alice")
    await bob.wait_text("lunch at noon?")

    # Read receipt: Bob has the conversation open, so Alice's last message shows as read.
    await (
        message(alice, "lunch at noon?")
        .locator('[data-testid="read-receipt"]')
        .wait_for(timeout=WAIT_MS)
    )

    # A reply (on the phone: a tap shows the message's actions).
    await message(bob, "lunch at noon?").locator(".bubble").tap()
    await message(bob, "lunch at noon?").locator('[data-testid="reply-button"]').tap()
    await bob.page.locator('[data-testid="reply-preview"]').wait_for(timeout=WAIT_MS)
    await bob.send("yes, see you there")
    quote = message(alice, "yes, see you there").locator('[data-testid="reply-quote"]')
    await quote.wait_for(timeout=WAIT_MS)
    assert "lunch at noon?" in await quote.inner_text()

    # A reaction, seen by both with its count.
    answer = message(alice, "yes, see you there")
    await answer.hover()
    await answer.locator('[data-testid="react-button"]').click()
    await answer.locator('[data-testid="reaction-option"][data-emoji="👍"]').click()
    for person in (alice, bob):
        reaction = message(person, "yes, see you there").locator(
            '[data-testid="reaction"][data-emoji="👍"]'
        )
        await reaction.wait_for(timeout=WAIT_MS)
        assert await reaction.get_attribute("data-count") == "1"
    mine = (
        await message(alice, "yes, see you there")
        .locator('[data-testid="reaction"]')
        .get_attribute("data-mine")
    )
    assert mine == "true"

    # An image attachment arrives with a preview that the browser decoded.
    await alice.page.set_input_files(
        '[data-testid="attach-input"]',
        files=[{"name": "map.png", "mimeType": "image/png", "buffer": tiny_png(24, 16)}],
    )
    for person in (alice, bob):
        image = person.page.locator('[data-testid="attachment-image"]').last
        await image.wait_for(timeout=WAIT_MS)
        assert (await image.get_attribute("src") or "").startswith("blob:")
        await person.page.wait_for_function(
            "img => img.complete && img.naturalWidth === 24 && img.naturalHeight === 16",
            arg=await image.element_handle(),
            timeout=WAIT_MS,
        )
    await alice.screenshot("11-desktop-dm-features")
    await bob.screenshot("12-phone-dm")

    # Members with safety fingerprints: what Alice sees for Bob is what Bob sees for himself.
    async def fingerprints(person: Person) -> dict[str, str]:
        await person.page.click('[data-testid="members-button"]')
        await person.page.locator('[data-testid="member"]').nth(1).wait_for(timeout=WAIT_MS)
        shown = {}
        for member in await person.page.locator('[data-testid="member"]').all():
            inbox = await member.get_attribute("data-inbox-id") or ""
            shown[inbox] = " ".join(
                (await member.locator('[data-testid="fingerprint"]').inner_text()).split()
            )
        return shown

    seen_by_alice = await fingerprints(alice)
    seen_by_bob = await fingerprints(bob)
    assert set(seen_by_alice) == {alice.inbox_id, bob.inbox_id}
    assert seen_by_alice == seen_by_bob
    assert seen_by_alice[alice.inbox_id] != seen_by_alice[bob.inbox_id]
    assert all(len("".join(f.split())) >= 30 for f in seen_by_alice.values())
    await bob.screenshot("13-phone-members")
    await alice.screenshot("14-desktop-members")
    for person in (alice, bob):
        await person.page.click('[data-testid="member-panel-close"]')

    # Reconnect: the relay goes away (every socket drops); the conversation says so, Bob's
    # message waits in his outbox, and when the relay is back both directions catch up.
    status = bob.page.locator('[data-testid="connection-status"]')
    banner = bob.page.locator('[data-testid="offline-banner"]')
    assert await status.get_attribute("data-state") == "connected"
    assert not await banner.is_visible()
    chat_relay.stop()
    try:
        await banner.wait_for(timeout=WAIT_MS)
        assert await status.get_attribute("data-state") != "connected"
        await bob.send("sent while the relay was down")
        pending = message(bob, "sent while the relay was down")
        assert await pending.get_attribute("data-status") == "sending"
        await bob.screenshot("15-phone-offline")
    finally:
        chat_relay.start()
    await banner.wait_for(state="hidden", timeout=WAIT_MS)
    assert await status.get_attribute("data-state") == "connected"
    await alice.wait_text("sent while the relay was down")
    await bob.page.wait_for_function(
        "m => m.dataset.status === 'sent'", arg=await pending.element_handle(), timeout=WAIT_MS
    )
    await alice.send("welcome back")
    await bob.wait_text("welcome back")

    # The browser says the network went (its offline event, in the worker): the connection is
    # dropped at once, not when the keepalive (20 s + 20 s) notices; online: back at once.
    worker = bob.page.workers[0]
    await worker.evaluate("self.dispatchEvent(new Event('offline'))")
    await banner.wait_for(timeout=5_000)
    await worker.evaluate("self.dispatchEvent(new Event('online'))")
    await banner.wait_for(state="hidden", timeout=10_000)
    await alice.send("after the network came back")
    await bob.wait_text("after the network came back")
    for person in (alice, bob):
        assert person.errors == [], person.errors
