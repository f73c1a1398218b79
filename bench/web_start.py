"""Benchmark of the web chat's start in Chromium: time to ready on a first visit (cold: empty
browser profile) and on a reload (warm), with the time of each loading stage the crypto worker
reports, and the bytes fetched.

A relay (Daphne, SQLite, static files served by the relay) on loopback, Debian's Chromium
headless, one profile at a time, nothing else running:

    .venv/bin/python bench/web_start.py [--runs 3]

Needs ``./dev setup`` (the wheel in static/wasm/, Pyodide in node_modules/) and Chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "relay"))

import daphne_nodes  # noqa: E402

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

# Recorded in the page: every progress event of the worker, with the page's clock.
RECORD_STAGES = """
(() => {
  window.__stages = [];
  const Original = window.Worker;
  window.Worker = class extends Original {
    constructor(...args) {
      super(...args);
      window.__stages.push(["worker created", performance.now()]);
      this.addEventListener("message", ({ data }) => {
        if (data?.event === "progress") window.__stages.push([data.stage, performance.now()]);
      });
    }
  };
})();
"""


async def visit(context: Any, url: str, linger: float = 0) -> dict[str, Any]:
    """Open the chat in a new page of ``context``, wait until ready, then ``linger`` seconds
    (after a first start the worker makes its runtime snapshot 3 s after ready)."""
    page = await context.new_page()
    fetched: list[int] = []
    page.on(
        "console",
        lambda message: (
            message.type in ("warning", "error") and print(f"  console: {message.text}")
        ),
    )
    page.on(
        "response",
        lambda response: fetched.append(int(response.headers.get("content-length") or 0)),
    )
    started = time.perf_counter()
    await page.goto(url)
    await page.wait_for_selector('[data-testid="ready"]', timeout=60_000)
    total = time.perf_counter() - started
    stages = await page.evaluate("window.__stages")
    await asyncio.sleep(linger)
    await page.close()
    return {"total": total, "stages": stages, "bytes": sum(fetched)}


def show(label: str, result: dict[str, Any]) -> None:
    steps = []
    previous = 0.0
    for stage, at in result["stages"]:
        steps.append(f"{stage} +{(at - previous) / 1000:.2f}")
        previous = at
    print(
        f"  {label}: {result['total']:.2f} s, {result['bytes'] / 1e6:.1f} MB fetched | "
        + ", ".join(steps)
    )


async def main(runs: int) -> None:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory() as tmp:
        env = daphne_nodes.sqlite_env(
            Path(tmp) / "relay.sqlite3", VEILPOST_SERVE_STATIC="1", **daphne_nodes.UNLIMITED_RATES
        )
        daphne_nodes.migrate(env, timeout=120)
        port, process = daphne_nodes.start_daphne(env, Path(tmp) / "daphne.log")
        try:
            if not daphne_nodes.wait_up(process, port, 60):
                raise SystemExit((Path(tmp) / "daphne.log").read_text()[-3000:])
            url = f"http://127.0.0.1:{port}/"
            cold, warm = [], []
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS
                )
                for run in range(runs):
                    context = await browser.new_context()
                    await context.add_init_script(RECORD_STAGES)
                    print(f"run {run + 1}")
                    first = await visit(context, url, linger=10)
                    show("cold", first)
                    second = await visit(context, url)
                    show("warm", second)
                    cold.append(first["total"])
                    warm.append(second["total"])
                    await context.close()
                await browser.close()
            for label, times in (("cold", cold), ("warm", warm)):
                each = ", ".join(f"{t:.2f}" for t in times)
                print(f"time to ready, {label}: median {statistics.median(times):.2f} s ({each})")
        finally:
            daphne_nodes.stop([process])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    asyncio.run(main(parser.parse_args().runs))
