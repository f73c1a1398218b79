"""Django settings for the Veilpost relay.

Everything an operator sets comes from the environment:

``VEILPOST_DEBUG``
    ``1``/``0`` (also true/false, yes/no, on/off). Defaults to **on**, for a source checkout;
    any deployment (the Docker image does) must set ``VEILPOST_DEBUG=0``.
``VEILPOST_SECRET_KEY``
    Django's secret key. Required when DEBUG is off, unless ``VEILPOST_SECRET_KEY_FILE`` is set.
    Every node of a scaled-out relay needs the same key.
``VEILPOST_SECRET_KEY_FILE``
    A file holding the secret key, created with a fresh random key if it does not exist (the
    Docker image points it into its data volume). Used when ``VEILPOST_SECRET_KEY`` is unset.
    With neither set and DEBUG on, a per-checkout key is generated in ``db/dev-secret-key``.
``VEILPOST_ALLOWED_HOSTS``
    Comma-separated host names; default ``localhost,127.0.0.1,[::1]``. WebSocket origins are
    checked against the same list.
``VEILPOST_HTTPS``
    ``1`` when clients reach the relay over HTTPS (TLS at Daphne or at a proxy): marks cookies
    Secure. Default off. Redirects to HTTPS and HSTS belong to the TLS-terminating proxy.
``VEILPOST_SERVE_STATIC``
    ``1`` to have Daphne serve ``/static/`` itself (see ``webapp/asgi.py``); defaults to DEBUG.
``VEILPOST_WIDGET_FRAME_ANCESTORS``
    Which sites may embed the agent widget (``/widget``): CSP ``frame-ancestors`` sources,
    comma-separated (``https://shop.example``); default ``*``, any site.
``VEILPOST_LOG_LEVEL``
    Log level of the console log; default ``INFO``.
``DATABASE_URL``
    A dj-database-url URL (e.g. ``postgres://user:pass@host/veilpost``). Default: SQLite at
    ``db/veilpost.sqlite3`` in WAL mode.
``REDIS_URL``
    Use channels_redis' RedisChannelLayer at this URL (needed for more than one Daphne node).
    Default: Channels' in-memory layer (one process only).

Relay limits (every node of a scaled-out relay should use the same values; see
``docs/protocol.md``):

``VEILPOST_MAX_ENVELOPE_BYTES``
    Largest envelope payload accepted, in bytes; default 2097152 (2 MiB: an inline attachment
    of up to 1 MiB, padded and encrypted, fits).
``VEILPOST_PUBLISH_RATE`` / ``VEILPOST_PUBLISH_BURST``
    Per-installation publish token bucket: envelopes per second (default 50) and burst
    (default 200).
``VEILPOST_CLAIM_RATE`` / ``VEILPOST_CLAIM_BURST``
    Per-installation key package claims: claims per second (default 1) and burst (default 30).
``VEILPOST_SEND_WINDOW`` / ``VEILPOST_SEND_WINDOW_BYTES``
    Per-connection flow control: envelopes (default 1000) and payload bytes (default 16 MiB)
    delivered but not yet acknowledged by the client with a ``received`` frame.
``VEILPOST_SLOW_CONSUMER_SECONDS``
    A connection whose send window stays full this long is closed; default 30.
``VEILPOST_MAX_SUBSCRIPTIONS``
    Topics one connection may subscribe to; default 1000.
``VEILPOST_CHALLENGE_SECONDS`` / ``VEILPOST_TOKEN_SECONDS``
    Lifetime of an authentication challenge (default 60) and of a REST token (default 3600).
``VEILPOST_AUTH_AUDIENCE``
    The host name clients sign in authentication challenges. Default: the request's Host
    header (which must be in ``VEILPOST_ALLOWED_HOSTS``). Set it when a proxy rewrites Host.
``VEILPOST_RETENTION_DAYS``
    ``manage.py prune`` deletes envelopes and blobs older than this; default 30, ``0`` keeps
    them forever.
``VEILPOST_MAX_BLOB_BYTES``
    Largest blob (an encrypted attachment, ``POST /api/v1/blobs``) accepted, in bytes; default
    26214400 (25 MiB). The blob endpoint reads its body itself, so Django's
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (2.5 MiB, for JSON bodies) does not apply to it; a proxy in
    front of the relay must let bodies of this size through (and should refuse larger ones).
``VEILPOST_BLOB_RATE`` / ``VEILPOST_BLOB_BURST``
    Per-installation blob uploads: uploads per second (default 2) and burst (default 20).
``VEILPOST_BLOB_QUOTA_BYTES``
    Bytes of blobs one installation may have stored at a time; default 268435456 (256 MiB).
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = BASE_DIR / "db"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name} must be one of 1/0, true/false, yes/no, on/off; got {raw!r}"
    )


def _env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def _env_number(name: str, default: float, minimum: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number; got {raw!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise ImproperlyConfigured(
            f"{name} must be a finite number at least {minimum:g}; got {raw!r}"
        )
    return value


def _env_int(name: str, default: int, minimum: int) -> int:
    value = _env_number(name, default, minimum)
    if value != int(value):
        raise ImproperlyConfigured(f"{name} must be a whole number; got {value:g}")
    return int(value)


def _read_or_create_key(path: Path) -> str:
    """Read the secret key in ``path``, first writing a fresh random one if the file is missing."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(50) + "\n")
    key = path.read_text().strip()
    if not key:
        raise ImproperlyConfigured(f"the secret key file {path} is empty")
    return key


def _secret_key(debug: bool) -> str:
    key = os.environ.get("VEILPOST_SECRET_KEY", "").strip()
    if key:
        return key
    key_file = os.environ.get("VEILPOST_SECRET_KEY_FILE", "").strip()
    if key_file:
        return _read_or_create_key(Path(key_file))
    if debug:
        return _read_or_create_key(DATA_DIR / "dev-secret-key")
    raise ImproperlyConfigured(
        "Set VEILPOST_SECRET_KEY (or VEILPOST_SECRET_KEY_FILE) when VEILPOST_DEBUG is off."
    )


def _database() -> dict[str, Any]:
    # Persistent connections, on every database: Channels runs every query of a node in one
    # thread, and Django would otherwise open a new database connection for each of them (each
    # database_sync_to_async call closes "old" connections); the health check replaces a
    # connection the database dropped.
    persistent: dict[str, Any] = {"conn_max_age": 600, "conn_health_checks": True}
    if os.environ.get("DATABASE_URL"):
        db: dict[str, Any] = dict(dj_database_url.config(**persistent))
    else:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        db = dict(dj_database_url.parse(f"sqlite:///{DATA_DIR / 'veilpost.sqlite3'}", **persistent))
    if db["ENGINE"] == "django.db.backends.sqlite3":
        db["OPTIONS"] = {
            # WAL lets readers run beside the writer; IMMEDIATE takes the write lock when a
            # transaction starts, so concurrent writers wait (timeout, seconds) instead of
            # failing with "database is locked" on a lock upgrade.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            **db.get("OPTIONS", {}),
        }
        # A file, not Django's shared in-memory database, so that tests of concurrent writers
        # (threads, each with its own connection) get WAL and the busy timeout; one per process
        # so that two test runs never share it.
        db["TEST"] = {"NAME": str(Path(tempfile.gettempdir()) / f"veilpost-test-{os.getpid()}.db")}
    return db


DEBUG = _env_bool("VEILPOST_DEBUG", True)
SECRET_KEY = _secret_key(DEBUG)
ALLOWED_HOSTS = _env_list("VEILPOST_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "daphne",  # first: its runserver command (serving HTTP and WebSocket) replaces Django's
    "channels",
    "django.contrib.staticfiles",
    "ninja",  # serves the API docs' JavaScript and CSS from our own static files, not a CDN
    "webapp.relay",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "webapp.middleware.JsonMethodNotAllowedMiddleware",
]

ROOT_URLCONF = "webapp.urls"
ASGI_APPLICATION = "webapp.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
            ],
        },
    },
]

DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Live delivery is best effort by design: a node that finds a gap, or a connection that falls
# behind, reads the database (see webapp/relay/hub.py). Each node's own channel carries every
# topic's envelopes for it (batched), so it gets more room than a connection's. Memberships
# are renewed well within group_expiry.
_CHANNEL_CONFIG: dict[str, Any] = {"capacity": 1000, "expiry": 60, "group_expiry": 86400}
_NODE_CHANNELS, _NODE_CAPACITY = "relay-node.*", 10000
if os.environ.get("REDIS_URL"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [os.environ["REDIS_URL"]],
                "channel_capacity": {_NODE_CHANNELS: _NODE_CAPACITY},
                **_CHANNEL_CONFIG,
            },
        }
    }
else:
    # Channels 4.3's in-memory layer uses channel_capacity as given, without compiling the
    # patterns as channels_redis does: give it the compiled form.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {
                "channel_capacity": [
                    (re.compile(fnmatch.translate(_NODE_CHANNELS)), _NODE_CAPACITY)
                ],
                **_CHANNEL_CONFIG,
            },
        }
    }

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# Static files: the web chat in static/, and the Pyodide runtime from npm under /static/pyodide/.
# Folders that are absent (node_modules before `npm ci`) are left out so that `check` stays quiet.
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS: list[Path | tuple[str, Path]] = []
if (BASE_DIR / "static").is_dir():
    STATICFILES_DIRS.append(BASE_DIR / "static")
if (BASE_DIR / "node_modules" / "pyodide").is_dir():
    STATICFILES_DIRS.append(("pyodide", BASE_DIR / "node_modules" / "pyodide"))
# Daphne serves static files itself (see webapp/asgi.py) in DEBUG, or when asked to.
VEILPOST_SERVE_STATIC = _env_bool("VEILPOST_SERVE_STATIC", DEBUG)

# Security headers. Django's defaults already send nosniff, Referrer-Policy: same-origin and
# Cross-Origin-Opener-Policy: same-origin; these make the rest explicit.
X_FRAME_OPTIONS = "DENY"
# Who may embed the agent widget's page (/widget): CSP frame-ancestors sources, comma-separated
# ("https://shop.example,https://*.example.org"); "*" lets any site embed it.
VEILPOST_WIDGET_FRAME_ANCESTORS = _env_list("VEILPOST_WIDGET_FRAME_ANCESTORS", ["*"])
for _source in VEILPOST_WIDGET_FRAME_ANCESTORS:
    if not re.fullmatch(r"[^\s;,'\"]+|'self'|'none'", _source):
        raise ImproperlyConfigured(
            f"VEILPOST_WIDGET_FRAME_ANCESTORS: {_source!r} is not a CSP source"
            " (a scheme, host or URL such as https://shop.example, or *)"
        )
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
VEILPOST_HTTPS = _env_bool("VEILPOST_HTTPS", False)
CSRF_COOKIE_SECURE = VEILPOST_HTTPS
SESSION_COOKIE_SECURE = VEILPOST_HTTPS
# `check --deploy` still warns about SECURE_SSL_REDIRECT (W008) and HSTS (W004) on purpose:
# both belong to whatever terminates TLS, and a redirect here would break the container's
# plain-HTTP health check.

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "console": {"format": "{asctime} {levelname} {name}: {message}", "style": "{"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "console"},
    },
    "root": {"handlers": ["console"], "level": os.environ.get("VEILPOST_LOG_LEVEL", "INFO")},
    # Drop the handler Django's default logging puts on "django", so each record prints once.
    "loggers": {"django": {"handlers": [], "propagate": True}},
}

# --- The relay's limits (documented above and in docs/protocol.md) ---------------------------
VEILPOST_MAX_ENVELOPE_BYTES = _env_int("VEILPOST_MAX_ENVELOPE_BYTES", 2 << 20, minimum=256)
VEILPOST_PUBLISH_RATE = _env_number("VEILPOST_PUBLISH_RATE", 50.0, minimum=0.001)
VEILPOST_PUBLISH_BURST = _env_int("VEILPOST_PUBLISH_BURST", 200, minimum=1)
VEILPOST_CLAIM_RATE = _env_number("VEILPOST_CLAIM_RATE", 1.0, minimum=0.001)
VEILPOST_CLAIM_BURST = _env_int("VEILPOST_CLAIM_BURST", 30, minimum=1)
VEILPOST_SEND_WINDOW = _env_int("VEILPOST_SEND_WINDOW", 1000, minimum=1)
VEILPOST_SEND_WINDOW_BYTES = _env_int("VEILPOST_SEND_WINDOW_BYTES", 16 << 20, minimum=1)
VEILPOST_SLOW_CONSUMER_SECONDS = _env_number("VEILPOST_SLOW_CONSUMER_SECONDS", 30.0, minimum=0.01)
VEILPOST_MAX_SUBSCRIPTIONS = _env_int("VEILPOST_MAX_SUBSCRIPTIONS", 1000, minimum=1)
VEILPOST_CHALLENGE_SECONDS = _env_number("VEILPOST_CHALLENGE_SECONDS", 60.0, minimum=1)
VEILPOST_TOKEN_SECONDS = _env_number("VEILPOST_TOKEN_SECONDS", 3600.0, minimum=1)
VEILPOST_AUTH_AUDIENCE = os.environ.get("VEILPOST_AUTH_AUDIENCE", "").strip().lower() or None
VEILPOST_RETENTION_DAYS = _env_number("VEILPOST_RETENTION_DAYS", 30.0, minimum=0)
VEILPOST_MAX_BLOB_BYTES = _env_int("VEILPOST_MAX_BLOB_BYTES", 25 << 20, minimum=1)
VEILPOST_BLOB_RATE = _env_number("VEILPOST_BLOB_RATE", 2.0, minimum=0.001)
VEILPOST_BLOB_BURST = _env_int("VEILPOST_BLOB_BURST", 20, minimum=1)
VEILPOST_BLOB_QUOTA_BYTES = _env_int("VEILPOST_BLOB_QUOTA_BYTES", 256 << 20, minimum=1)
