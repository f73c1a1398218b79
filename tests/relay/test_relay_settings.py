"""webapp/settings.py reads the environment. Each test evaluates the settings file afresh."""

from __future__ import annotations

import runpy
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

import webapp

SETTINGS_FILE = Path(webapp.__file__).parent / "settings.py"
ENV_VARS = [
    "VEILPOST_DEBUG",
    "VEILPOST_SECRET_KEY",
    "VEILPOST_SECRET_KEY_FILE",
    "VEILPOST_ALLOWED_HOSTS",
    "VEILPOST_HTTPS",
    "VEILPOST_SERVE_STATIC",
    "VEILPOST_LOG_LEVEL",
    "DATABASE_URL",
    "REDIS_URL",
    "VEILPOST_MAX_ENVELOPE_BYTES",
    "VEILPOST_PUBLISH_RATE",
    "VEILPOST_SEND_WINDOW",
    "VEILPOST_AUTH_AUDIENCE",
    "VEILPOST_RETENTION_DAYS",
    "VEILPOST_MAX_BLOB_BYTES",
    "VEILPOST_BLOB_RATE",
    "VEILPOST_BLOB_BURST",
    "VEILPOST_BLOB_QUOTA_BYTES",
    "VEILPOST_WIDGET_FRAME_ANCESTORS",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    yield


def load() -> dict[str, Any]:
    return runpy.run_path(str(SETTINGS_FILE))


def test_local_defaults() -> None:
    s = load()

    assert s["DEBUG"] is True
    assert s["SECRET_KEY"]
    assert s["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1", "[::1]"]
    db = s["DATABASES"]["default"]
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert Path(db["NAME"]) == s["BASE_DIR"] / "db" / "veilpost.sqlite3"
    assert "journal_mode=WAL" in db["OPTIONS"]["init_command"]
    assert s["CHANNEL_LAYERS"]["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"
    assert s["INSTALLED_APPS"][0] == "daphne"
    assert s["ASGI_APPLICATION"] == "webapp.asgi.application"
    assert s["VEILPOST_SERVE_STATIC"] is True


def test_dev_secret_key_is_stable_per_checkout() -> None:
    assert load()["SECRET_KEY"] == load()["SECRET_KEY"]


def test_production_needs_a_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEILPOST_DEBUG", "0")

    with pytest.raises(ImproperlyConfigured, match="VEILPOST_SECRET_KEY"):
        load()


def test_production_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEILPOST_DEBUG", "off")
    monkeypatch.setenv("VEILPOST_SECRET_KEY", "k" * 60)
    monkeypatch.setenv("VEILPOST_ALLOWED_HOSTS", "relay.example, .example.org ,")
    monkeypatch.setenv("VEILPOST_HTTPS", "yes")
    monkeypatch.setenv("DATABASE_URL", "postgres://relay:pw@db.internal:5432/veilpost")
    monkeypatch.setenv("REDIS_URL", "redis://redis.internal:6379/0")

    s = load()

    assert s["DEBUG"] is False
    assert s["SECRET_KEY"] == "k" * 60
    assert s["ALLOWED_HOSTS"] == ["relay.example", ".example.org"]
    assert s["CSRF_COOKIE_SECURE"] is True
    assert s["VEILPOST_SERVE_STATIC"] is False
    db = s["DATABASES"]["default"]
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["HOST"], db["PORT"], db["NAME"]) == ("db.internal", 5432, "veilpost")
    assert "init_command" not in db.get("OPTIONS", {})
    # Persistent, health-checked connections, not one new connection per query.
    assert (db["CONN_MAX_AGE"], db["CONN_HEALTH_CHECKS"]) == (600, True)
    layer = s["CHANNEL_LAYERS"]["default"]
    assert layer["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    assert layer["CONFIG"]["hosts"] == ["redis://redis.internal:6379/0"]


def test_secret_key_file_is_created_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "secret-key"
    monkeypatch.setenv("VEILPOST_DEBUG", "0")
    monkeypatch.setenv("VEILPOST_SECRET_KEY_FILE", str(key_file))

    first = load()["SECRET_KEY"]

    assert len(first) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load()["SECRET_KEY"] == first


def test_bad_boolean_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEILPOST_DEBUG", "maybe")

    with pytest.raises(ImproperlyConfigured, match="VEILPOST_DEBUG"):
        load()


def test_static_dirs_only_list_existing_folders() -> None:
    s = load()
    base: Path = s["BASE_DIR"]
    pyodide = ("pyodide", base / "node_modules" / "pyodide")

    assert (pyodide in s["STATICFILES_DIRS"]) == pyodide[1].is_dir()
    assert ((base / "static") in s["STATICFILES_DIRS"]) == (base / "static").is_dir()
    assert s["STATIC_URL"] == "/static/"
    assert s["STATIC_ROOT"] == base / "staticfiles"


def test_relay_limit_defaults() -> None:
    s = load()

    assert s["VEILPOST_MAX_ENVELOPE_BYTES"] == 2 << 20
    assert s["VEILPOST_PUBLISH_RATE"] == 50.0
    assert s["VEILPOST_SEND_WINDOW"] == 1000
    assert s["VEILPOST_RETENTION_DAYS"] == 30.0
    assert s["VEILPOST_AUTH_AUDIENCE"] is None
    assert s["VEILPOST_MAX_BLOB_BYTES"] == 25 << 20
    assert (s["VEILPOST_BLOB_RATE"], s["VEILPOST_BLOB_BURST"]) == (2.0, 20)
    assert s["VEILPOST_BLOB_QUOTA_BYTES"] == 256 << 20
    assert s["CHANNEL_LAYERS"]["default"]["CONFIG"]["capacity"] == 1000


def test_relay_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEILPOST_MAX_ENVELOPE_BYTES", "65536")
    monkeypatch.setenv("VEILPOST_PUBLISH_RATE", "2.5")
    monkeypatch.setenv("VEILPOST_RETENTION_DAYS", "0")
    monkeypatch.setenv("VEILPOST_AUTH_AUDIENCE", "Relay.Example")
    monkeypatch.setenv("VEILPOST_MAX_BLOB_BYTES", "1048576")
    monkeypatch.setenv("VEILPOST_BLOB_QUOTA_BYTES", "4194304")

    s = load()

    assert s["VEILPOST_MAX_ENVELOPE_BYTES"] == 65536
    assert s["VEILPOST_PUBLISH_RATE"] == 2.5
    assert s["VEILPOST_RETENTION_DAYS"] == 0
    assert s["VEILPOST_AUTH_AUDIENCE"] == "relay.example"
    assert (s["VEILPOST_MAX_BLOB_BYTES"], s["VEILPOST_BLOB_QUOTA_BYTES"]) == (1 << 20, 4 << 20)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("VEILPOST_MAX_ENVELOPE_BYTES", "lots", "must be a number"),
        ("VEILPOST_MAX_ENVELOPE_BYTES", "4096.5", "whole number"),
        ("VEILPOST_SEND_WINDOW", "0", "at least 1"),
        ("VEILPOST_PUBLISH_RATE", "nan", "finite"),
        ("VEILPOST_SEND_WINDOW", "inf", "finite"),
        ("VEILPOST_RETENTION_DAYS", "-1", "at least 0"),
        ("VEILPOST_MAX_BLOB_BYTES", "0", "at least 1"),
        ("VEILPOST_BLOB_BURST", "2.5", "whole number"),
    ],
)
def test_bad_relay_limit_is_an_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(ImproperlyConfigured, match=name) as caught:
        load()

    assert message in str(caught.value)


def test_widget_frame_ancestors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load()["VEILPOST_WIDGET_FRAME_ANCESTORS"] == ["*"]
    monkeypatch.setenv(
        "VEILPOST_WIDGET_FRAME_ANCESTORS", "https://shop.example, https://*.example.org"
    )
    assert load()["VEILPOST_WIDGET_FRAME_ANCESTORS"] == [
        "https://shop.example",
        "https://*.example.org",
    ]


@pytest.mark.parametrize(
    "value", ["https://a.example; script-src *", "https://a.example 'unsafe-inline'", "'x'"]
)
def test_widget_frame_ancestors_cannot_inject_into_the_policy(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("VEILPOST_WIDGET_FRAME_ANCESTORS", value)
    with pytest.raises(ImproperlyConfigured, match="VEILPOST_WIDGET_FRAME_ANCESTORS"):
        load()
