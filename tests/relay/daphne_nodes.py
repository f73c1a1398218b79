"""Relay processes on loopback, shared by the scale-out tests and ``bench/relay.py``.

A fresh PostgreSQL database on this machine (created and dropped through the first admin role
that connects), ``manage.py migrate``, Daphne on a free port, a wait for ``/api/v1/health``,
and a stop that terminates, then kills.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[2]
APP = "webapp.asgi:application"
PG_HOST, PG_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def admin_connection() -> psycopg.Connection[Any]:
    """A connection to PostgreSQL's maintenance database, as the first role that works;
    ``ConnectionError`` naming the last failures when none does."""
    errors = []
    for user in ("root", "postgres", os.environ.get("USER", "")):
        for dbname in ("postgres", "test"):
            if not user:
                continue
            try:
                return psycopg.connect(
                    host=PG_HOST,
                    port=PG_PORT,
                    user=user,
                    dbname=dbname,
                    autocommit=True,
                    connect_timeout=3,
                )
            except psycopg.Error as error:
                errors.append(f"{user}@{dbname}: {str(error).strip()}")
    raise ConnectionError("; ".join(errors[-2:]))


def create_database(admin: psycopg.Connection[Any], database: str) -> None:
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(database)))
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def drop_database(admin: psycopg.Connection[Any], database: str) -> None:
    admin.execute(
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
    )


def database_url(admin: psycopg.Connection[Any], database: str) -> str:
    return f"postgres://{admin.info.user}@{PG_HOST}:{PG_PORT}/{database}"


def migrate(env: dict[str, str], timeout: float) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=timeout,
    )


# What the messaging tests and benchmarks lift: they publish and claim as fast as they can.
UNLIMITED_RATES = {
    "VEILPOST_PUBLISH_RATE": "100000",
    "VEILPOST_PUBLISH_BURST": "100000",
    "VEILPOST_CLAIM_RATE": "100000",
    "VEILPOST_CLAIM_BURST": "100000",
}
# The relay's ASGI app recording what it receives and sends (tests/messaging/capture_asgi.py).
CAPTURE_APP = "capture_asgi:application"


def sqlite_env(database: Path, **settings: str) -> dict[str, str]:
    """The environment of one relay node on SQLite at ``database`` and Channels' in-memory
    layer (debug off, a fresh secret key, warnings only), plus ``settings``."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "VEILPOST_DEBUG": "0",
        "VEILPOST_SECRET_KEY": secrets.token_urlsafe(32),
        "VEILPOST_LOG_LEVEL": "WARNING",
        **settings,
    }
    env.pop("REDIS_URL", None)
    return env


def capture_settings(capture: Path) -> dict[str, str]:
    """The settings that let Daphne load :data:`CAPTURE_APP`, recording to ``capture``."""
    return {
        "VEILPOST_CAPTURE_FILE": str(capture),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "messaging"), str(ROOT)]),
    }


def start_daphne(
    env: dict[str, str], log: Path, app: str = APP, port: int | None = None
) -> tuple[int, subprocess.Popen[bytes]]:
    """Daphne serving ``app`` (the relay) on loopback, on ``port`` or a free one, output
    appended to ``log``."""
    port = port or free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return port, process


def wait_up(
    process: subprocess.Popen[bytes], port: int, seconds: float, *, health: bool = True
) -> bool:
    """Whether the server on ``port`` answered within ``seconds`` (and did not exit): with
    200 on ``/api/v1/health``, or when not ``health``, by accepting a TCP connection."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if health:
                url = f"http://127.0.0.1:{port}/api/v1/health"
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return True
            else:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    return False


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Terminate all, then wait for each, killing any that take more than 10 s."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
