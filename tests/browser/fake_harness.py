"""The web chat on the fake worker (``fake_worker.js``): no relay, no Pyodide.

A development server renders ``webapp/relay/templates/relay/chat.html`` with plain static paths,
points its ``data-worker`` at the fake worker (the page's query string is passed on to it, so
``/?scenario=fail`` shows the error state) and sends the chat's Content-Security-Policy, so a
CSP violation shows up here first. ``shots`` drives Debian's Chromium through the main screens
at desktop and phone widths, checks a few behaviours and saves screenshots.

    python tests/browser/fake_harness.py serve [--port 8765]
    python tests/browser/fake_harness.py shots [--out /tmp/veilpost-shots]
"""

from __future__ import annotations

import argparse
import html
import http.server
import re
import struct
import sys
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from webapp.relay.csp import CHAT_CSP

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "webapp" / "relay" / "templates" / "relay" / "chat.html"
SERVED = ("/static/chat/", "/tests/browser/")
FAKE_WORKER = "/tests/browser/fake_worker.js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def render_page(query: str) -> bytes:
    """chat.html with /static/ paths and the fake worker, as Django would render it."""
    text = TEMPLATE.read_text(encoding="utf-8").replace("{% load static %}", "")
    text = re.sub(r"\{% static '([^']+)' %\}", lambda m: f"/static/{m[1]}", text)
    worker = FAKE_WORKER + (f"?{query}" if query else "")
    text = text.replace(
        'data-worker="/static/chat/worker.js"', f'data-worker="{html.escape(worker)}"'
    )
    if "{%" in text or "{{" in text:
        raise ValueError("chat.html uses template tags the harness does not render")
    return text.encode("utf-8")


class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, directory=str(ROOT), **kwargs)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path in ("/", "/index.html"):
            body = render_page(url.query)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Security-Policy", CHAT_CSP)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif url.path.startswith(SERVED):
            super().do_GET()
        else:
            self.send_error(404)

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_server(port: int) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def tiny_png(width: int = 96, height: int = 64) -> bytes:
    """A small gradient PNG, for the attachment upload."""
    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 200)) for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def shots(out: Path) -> int:
    """Walk the main screens, check behaviour, save screenshots; 1 if a check failed."""
    from playwright.sync_api import Page, sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    server = start_server(0)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    problems: list[str] = []
    upload = out / "upload.png"
    upload.write_bytes(tiny_png())

    def check(ok: bool, what: str) -> None:
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            problems.append(what)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )

        def open_page(query: str, width: int, height: int, scheme: str = "light") -> Page:
            context = browser.new_context(
                viewport={"width": width, "height": height},
                color_scheme=scheme,  # type: ignore[arg-type]
            )
            context.grant_permissions(["clipboard-read", "clipboard-write"])
            page = context.new_page()
            page.on(
                "console",
                lambda m: (
                    problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
                ),
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.goto(base + query)
            return page

        def shot(page: Page, name: str) -> None:
            page.wait_for_timeout(250)
            page.screenshot(path=str(out / f"{name}.png"))
            print(f"     saved {out / name}.png")

        def wait(page: Page, selector: str, state: str = "visible") -> None:
            page.wait_for_selector(selector, state=state, timeout=10_000)  # type: ignore[arg-type]

        # Loading, and loading that fails.
        page = open_page("?scenario=hang", 1280, 800)
        page.wait_for_selector("[data-stage=packages][data-state=active]")
        shot(page, "01-loading")
        page.context.close()
        page = open_page("?scenario=fail", 1280, 800)
        wait(page, "[data-testid=loading-error]")
        check(
            "404" in page.inner_text("[data-testid=loading-error-message]"), "load failure is shown"
        )
        shot(page, "02-loading-error")
        page.context.close()
        problems[:] = [p for p in problems if "fake boot failure" not in p]

        # Desktop, light.
        page = open_page("?fast=1", 1280, 800)
        wait(page, "[data-testid=ready]")
        wait(page, "[data-testid=connection-status][data-state=connected]")
        items = page.locator("[data-testid=conversation]")
        check(items.count() == 5, "five conversations listed")
        check(
            items.first.get_attribute("data-conversation-id") == "g-design",
            "newest conversation first",
        )
        check(
            page.inner_text("[data-testid=my-inbox-id]") == "3f9a1c0b7e2d4a6f8b1c9d0e2f4a6b8c",
            "my inbox id shown",
        )
        shot(page, "03-desktop-list")

        # Keyboard only: the dialog takes and returns focus; arrows move in the list.
        def focused() -> Any:
            return page.evaluate("document.activeElement.dataset.testid")

        page.focus("[data-testid=new-chat]")
        page.keyboard.press("Enter")
        wait(page, "[data-testid=new-chat-dialog]")
        check(focused() == "dm-recipient", "the dialog focuses its first field")
        page.keyboard.press("Escape")
        check(focused() == "new-chat", "Esc closes the dialog, focus returns")
        page.focus("[data-testid=conversation] >> nth=0")
        page.keyboard.press("ArrowDown")
        check(
            page.evaluate("document.activeElement.dataset.conversationId") == "dm-alice",
            "ArrowDown moves to the next conversation",
        )
        page.keyboard.press("Enter")
        wait(page, "[data-testid=message]")
        check(focused() == "composer", "opening a conversation focuses the composer")
        page.keyboard.press("Control+k")
        check(focused() == "conversation-filter", "Ctrl+K focuses the search")

        page.fill("[data-testid=my-name]", "Sam R.")
        page.press("[data-testid=my-name]", "Enter")
        page.wait_for_selector("[data-testid=toast] >> text=Name saved")
        page.click("[data-testid=copy-inbox]")
        page.wait_for_selector("[data-testid=toast] >> text=Inbox id copied")
        clipboard = page.evaluate("navigator.clipboard.readText()")
        check(clipboard == "3f9a1c0b7e2d4a6f8b1c9d0e2f4a6b8c", "inbox id copied")
        page.click("[data-testid=copy-link]")
        page.wait_for_selector("[data-testid=toast] >> text=Invite link copied")
        check(
            page.evaluate("navigator.clipboard.readText()").endswith(
                "#dm/3f9a1c0b7e2d4a6f8b1c9d0e2f4a6b8c"
            ),
            "invite link copied",
        )

        page.click("[data-conversation-id=dm-alice]")
        wait(page, "[data-testid=message]")
        check(page.evaluate("window.__pwned") is None, "no script ran from message text")
        texts = page.locator("[data-testid=message-text]").all_inner_texts()
        check(
            any('<img src=x onerror="window.__pwned=1">' in t for t in texts),
            "HTML in a message is shown as text",
        )
        check(page.locator("[data-testid=attachment-image]").count() == 1, "inline image shown")
        src = page.get_attribute("[data-testid=attachment-image]", "src") or ""
        check(src.startswith("blob:"), "image preview uses a blob: URL")
        check(page.locator("[data-testid=read-receipt]").count() == 1, "one read receipt")
        shot(page, "04-desktop-dm")

        page.click("[data-testid=load-older]")
        page.locator("[data-testid=message]").nth(60).wait_for()
        check(page.is_hidden("[data-testid=load-older]"), "all history loaded")
        shot(page, "05-desktop-load-older")

        page.fill("[data-testid=composer]", "Hello from the harness")
        page.press("[data-testid=composer]", "Enter")
        mine = page.locator("[data-testid=message][data-mine=true]").last
        check(mine.get_attribute("data-status") in ("sending", "sent"), "sent message appears")
        page.wait_for_selector(
            "[data-testid=message][data-mine=true][data-status=sent] >> text=Hello from the harness"
        )
        page.wait_for_selector("text=Echo: Hello from the harness")
        page.wait_for_timeout(1500)
        check(page.inner_text("[data-testid=read-receipt]") == "Read", "read receipt moves")
        last_mine = page.locator("[data-testid=message][data-mine=true]").last
        last_mine.hover()
        last_mine.locator("[data-testid=react-button]").click()
        shot(page, "06-desktop-picker")
        last_mine.locator("[data-testid=reaction-option][data-emoji='😂']").click()
        wait(page, "[data-testid=reaction][data-emoji='😂'][data-mine=true]")
        theirs = page.locator("[data-testid=message][data-mine=false]").last
        theirs.hover()
        theirs.locator("[data-testid=reply-button]").click()
        check(page.is_visible("[data-testid=reply-preview]"), "reply preview shown")
        page.keyboard.type("Replying with Shift+Enter")
        page.keyboard.press("Shift+Enter")
        page.keyboard.type("second line")
        shot(page, "07-desktop-reply")
        page.keyboard.press("Enter")
        page.wait_for_selector("[data-testid=message][data-mine=true] [data-testid=reply-quote]")
        check(
            any(
                "Replying with Shift+Enter\nsecond line" in t
                for t in page.locator("[data-testid=message-text]").all_inner_texts()
            ),
            "Shift+Enter makes a new line",
        )
        page.set_input_files("[data-testid=attach-input]", str(upload))
        page.wait_for_selector("[data-testid=attachment-image] >> nth=1")
        shot(page, "08-desktop-sent")

        # A group: sender names, notices, a failed message, a file, reactions.
        page.click("[data-conversation-id=g-design]")
        page.wait_for_selector("[data-testid=conversation-title] >> text=Design team")
        wait(page, "[data-testid=retry-button]")
        page.wait_for_selector("[data-conversation-id=g-design][data-unread='0']")
        shot(page, "09-desktop-group")
        page.click("[data-testid=retry-button]")
        page.wait_for_selector("[data-testid=retry-button]", state="detached")
        with page.expect_download() as download:
            page.click("[data-testid=attachment-file] [data-testid=download-button]")
        check(download.value.suggested_filename == "onboarding-brief.pdf", "download works")

        page.click("[data-testid=members-button]")
        wait(page, "[data-testid=member-panel]")
        check(page.locator("[data-testid=member]").count() == 4, "four members")
        check(
            len(page.locator("[data-testid=fingerprint]").first.inner_text().split()) == 12,
            "fingerprint in 12 groups",
        )
        shot(page, "10-desktop-members")
        page.fill("[data-testid=add-members-input]", "deadbeefdeadbeefdeadbeefdeadbeef")
        page.click("[data-testid=add-members-button]")
        page.wait_for_selector(
            "[data-testid=member][data-inbox-id=deadbeefdeadbeefdeadbeefdeadbeef]"
        )
        page.click(
            "[data-testid=member][data-inbox-id=deadbeefdeadbeefdeadbeefdeadbeef]"
            " [data-testid=remove-member]"
        )
        page.wait_for_selector(
            "[data-testid=member][data-inbox-id=deadbeefdeadbeefdeadbeefdeadbeef]", state="detached"
        )
        check(page.locator("[data-testid=member]").count() == 4, "member added and removed")
        page.fill("[data-testid=rename-input]", "Design crew")
        page.click("[data-testid=rename-save]")
        page.wait_for_selector("[data-testid=conversation-title] >> text=Design crew")
        page.keyboard.press("Escape")
        check(page.is_hidden("[data-testid=member-panel]"), "Esc closes the member panel")

        # Reactions: click mine again to remove it; Esc closes the picker, focus goes back.
        bob = page.locator("[data-testid=message]", has_text="sketches by Friday")
        bob.locator("[data-testid=reaction][data-mine=true]").click()
        page.wait_for_selector("[data-testid=reaction][data-count='2'][data-mine=false]")
        bob.hover()
        bob.locator("[data-testid=react-button]").click()
        wait(page, "[data-testid=reaction-picker]")
        page.keyboard.press("Escape")
        page.wait_for_selector("[data-testid=reaction-picker]", state="detached")
        check(focused() == "react-button", "Esc closes the picker and refocuses React")
        # A send that fails shows Retry; a command error restores the text.
        page.fill("[data-testid=composer]", "this one will fail")
        page.press("[data-testid=composer]", "Enter")
        page.wait_for_selector(
            "[data-testid=message][data-status=failed] >> text=this one will fail"
        )
        page.fill("[data-testid=composer]", "relay down test")
        page.press("[data-testid=composer]", "Enter")
        page.wait_for_selector("[data-testid=toast] >> text=the relay did not answer")
        check(
            page.input_value("[data-testid=composer]") == "relay down test",
            "unsent text is put back",
        )
        page.fill("[data-testid=composer]", "")

        page.click("[data-testid=new-chat]")
        wait(page, "[data-testid=new-chat-dialog]")
        page.fill("[data-testid=dm-recipient]", "unknown-person")
        page.click("[data-testid=dm-start]")
        wait(page, "[data-testid=toast]")
        shot(page, "11-desktop-new-chat-error")
        page.click("[data-testid=tab-group]")
        page.fill("[data-testid=group-name]", "Weekend trip")
        page.fill(
            "[data-testid=group-members]",
            "a11ce5e7c0ffee0a11ce5e7c0ffee001, b0b0b0b01234567890abcdef0b0b0b0b",
        )
        page.click("[data-testid=group-create]")
        page.wait_for_selector("[data-testid=conversation-title] >> text=Weekend trip")
        check(page.is_hidden("[data-testid=new-chat-dialog]"), "dialog closes on create")

        page.click("[data-testid=members-button]")
        page.click("[data-testid=leave-button]")
        page.click("[data-testid=leave-confirm]")
        wait(page, "[data-testid=inactive-banner]")
        check(page.is_hidden("[data-testid=composer]"), "no composer after leaving")
        shot(page, "12a-desktop-left-group")

        page.click("[data-conversation-id=g-launch]")
        page.wait_for_selector("[data-testid=conversation-title] >> text=Launch")
        title = page.inner_text("[data-testid=conversation-title]")
        check(title.startswith("<b>Launch</b>"), "group name with HTML shown as text")
        check(page.evaluate("window.__pwned") is None, "no script ran from names")
        page.goto(base + "?fast=1#dm/deadbeefdeadbeefdeadbeefdeadbeef")
        wait(page, "[data-testid=dm-offer]")
        check(
            page.input_value("[data-testid=dm-recipient]") == "deadbeefdeadbeefdeadbeefdeadbeef",
            "#dm/ link offers the DM",
        )
        shot(page, "12-desktop-dm-offer")
        page.context.close()

        # The connection drops and comes back by itself; a worker that crashes.
        page = open_page("?fast=1&scenario=flaky&period=2", 1280, 800)
        wait(page, "[data-testid=connection-status][data-state=disconnected]")
        shot(page, "12b-desktop-disconnected")
        wait(page, "[data-testid=connection-status][data-state=connected]")
        page.context.close()
        page = open_page("?scenario=crash", 1280, 800)
        wait(page, "[data-testid=loading-error]")
        problems[:] = [p for p in problems if "crashed on purpose" not in p]
        page.context.close()

        # Dark.
        page = open_page("?fast=1#c/g-design", 1280, 800, "dark")
        wait(page, "[data-testid=retry-button]")
        shot(page, "13-desktop-dark-group")
        page.click("[data-conversation-id=dm-alice]")
        wait(page, "[data-testid=attachment-image]")
        shot(page, "14-desktop-dark-dm")
        page.context.close()

        # Phone.
        page = open_page("?fast=1&incoming=1", 390, 844)
        wait(page, "[data-testid=ready]")
        check(page.is_hidden("[data-testid=message-list]"), "phone: list only")
        shot(page, "15-phone-list")
        page.click("[data-conversation-id=g-design]")
        wait(page, "[data-testid=back-button]")
        check(page.is_hidden("[data-testid=conversation-list]"), "phone: conversation only")
        shot(page, "16-phone-group")
        friday = page.locator("[data-testid=message]", has_text="sketches by Friday")
        friday.locator(".bubble").click()
        friday.locator("[data-testid=react-button]").click()
        wait(page, "[data-testid=reaction-picker]")
        shot(page, "16a-phone-picker")
        page.keyboard.press("Escape")
        page.click("[data-testid=members-button]")
        wait(page, "[data-testid=member-panel]")
        shot(page, "17-phone-members")
        page.keyboard.press("Escape")
        page.click("[data-testid=back-button]")
        wait(page, "[data-testid=conversation-list]")
        page.wait_for_selector("[data-conversation-id=dm-bob][data-unread='3']", timeout=8000)
        shot(page, "18-phone-list-incoming")
        page.click("[data-conversation-id=dm-alice]")
        wait(page, "[data-testid=attachment-image]")
        shot(page, "19-phone-dm")
        page.context.close()

        page = open_page("?fast=1&scenario=empty", 390, 844, "dark")
        wait(page, "[data-testid=ready]")
        shot(page, "20-phone-empty-dark")
        page.context.close()
        browser.close()
    server.shutdown()
    for problem in problems:
        print("PROBLEM", problem)
    return 1 if problems else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the chat on the fake worker")
    serve.add_argument("--port", type=int, default=8765)
    screens = commands.add_parser("shots", help="check the main screens and save screenshots")
    screens.add_argument("--out", type=Path, default=Path("/tmp/veilpost-shots"))
    args = parser.parse_args(argv)
    run: Callable[[], int]
    if args.command == "serve":

        def run() -> int:
            server = start_server(args.port)
            print(f"http://127.0.0.1:{args.port}/  (?scenario=fail|hang|empty|flaky, &incoming=1)")
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                server.shutdown()
            return 0
    else:

        def run() -> int:
            return shots(args.out)

    return run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
