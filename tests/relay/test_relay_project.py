"""Project-level checks: migrations are committed, `manage.py check` passes in production."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_no_missing_migrations() -> None:
    # Exits (SystemExit 1) when a model change has no migration.
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("VEILPOST_") and k not in {"DATABASE_URL", "REDIS_URL"}
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION = {
    "VEILPOST_DEBUG": "0",
    "VEILPOST_SECRET_KEY": "a-long-random-production-secret-key-0123456789-abcdefghijklmnop",
    "VEILPOST_ALLOWED_HOSTS": "relay.example",
}


def test_check_passes_in_production() -> None:
    result = manage("check", "--fail-level", "WARNING", **PRODUCTION)

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_deploy_check_only_warns_about_tls_left_to_the_proxy() -> None:
    result = manage("check", "--deploy", **PRODUCTION, VEILPOST_HTTPS="1")

    assert result.returncode == 0, result.stderr
    warnings = {
        word.strip("():") for word in result.stderr.split() if word.startswith("(security.")
    }
    assert warnings == {"security.W004", "security.W008"}, result.stderr
