"""Helpers of the MCP tests: agents run in the test's event loop, agent files run as
processes (as `veilpost run` runs them), and the private-records example's module."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from veilpost.agent import Agent
from veilpost.client.storage import new_key

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "veilpost.cli"]
RECORDS_DIR = ROOT / "examples" / "private_records"
RECORDS_AGENT = RECORDS_DIR / "private_records_agent.py"
if str(RECORDS_DIR) not in sys.path:
    sys.path.insert(0, str(RECORDS_DIR))

from records import RecordSet, build_server  # noqa: E402  (the example's own module)

__all__ = ["RecordSet", "build_server"]


def new_agent(relay_url: str, directory: Path, name: str, **options: object) -> Agent:
    """A fresh agent (new inbox) with its database in ``directory``."""
    return Agent(
        db_path=str(directory / f"{name}.sqlite3"),
        db_key=new_key(),
        relay_url=relay_url,
        **options,  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def running(*agents: Agent) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run the agents (``agent.run()``) until the block ends; yields their tasks once ready."""
    tasks = [asyncio.create_task(agent.run()) for agent in agents]
    try:
        for agent in agents:
            await asyncio.wait_for(agent.ready.wait(), 30)
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def agent_env(relay_url: str, db: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "VEILPOST_RELAY_URL": relay_url,
        "VEILPOST_DB_PATH": str(db),
        "VEILPOST_DB_KEY": new_key().hex(),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


async def start_agent_file(
    path: Path, env: dict[str, str], log: Path, ready: str
) -> tuple[subprocess.Popen[bytes], str]:
    """Run an agent file with `veilpost run`; return the process and the inbox id its
    ``ready`` line (a regular expression with one group) prints."""
    out = log.open("ab")
    process = subprocess.Popen(
        [*CLI, "run", str(path)], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
    )
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        found = re.findall(ready, log.read_text())
        if found:
            return process, str(found[-1])
        assert process.poll() is None, log.read_text()
        assert asyncio.get_running_loop().time() < deadline, log.read_text()
        await asyncio.sleep(0.1)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


async def until(predicate, timeout: float = 20, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
