"""The REST API at /api/v1 and the home page, through Django's test client."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import OperationalError, connection, connections
from django.http import Http404
from django.test import Client, RequestFactory, override_settings
from ninja.errors import HttpError, ValidationError

from webapp import __version__
from webapp.api import api


@pytest.mark.django_db
def test_health_ok(client: Client) -> None:
    response = client.get("/api/v1/health")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {
        "status": "ok",
        "version": __version__,
        "database": {"status": "ok", "vendor": connection.vendor},
    }
    assert __version__ != "0+unknown"


def test_health_reports_database_down_as_503(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_cursor(*args: object, **kwargs: object) -> None:
        raise OperationalError("unable to open database file")

    # Patch the backend's class, so whichever thread's connection the view gets is broken.
    monkeypatch.setattr(type(connections["default"]), "cursor", broken_cursor)

    response = client.get("/api/v1/health")

    assert response.status_code == 503
    assert response.json() == {
        "status": "error",
        "version": __version__,
        "database": {"status": "error", "vendor": connection.vendor, "error": "OperationalError"},
    }


def test_openapi_schema_lists_health(client: Client) -> None:
    response = client.get("/api/v1/openapi.json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "Veilpost relay API"
    assert schema["info"]["version"] == __version__
    assert "get" in schema["paths"]["/api/v1/health"]


def test_docs_are_served_from_our_own_static_files(client: Client) -> None:
    response = client.get("/api/v1/docs")

    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower()


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1/health/", "/api/v2/health", "/api/"])
def test_unknown_api_path_is_json_404(client: Client, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == "not_found"
    assert isinstance(body["message"], str)


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (
            ValidationError([{"loc": ["body", "x"], "msg": "Field required"}]),
            422,
            "validation_error",
        ),
        (HttpError(400, "Cannot parse request body"), 400, "bad_request"),
        (HttpError(429, "Too many requests."), 429, "rate_limited"),
        (HttpError(418, "I'm a teapot"), 418, "error"),
        (Http404("no such thing"), 404, "not_found"),
        (RuntimeError("bug"), 500, "internal_error"),
    ],
)
def test_api_errors_are_json(exc: Exception, status: int, code: str) -> None:
    request = RequestFactory().get("/api/v1/anything")

    response = api.on_exception(request, exc)

    assert response.status_code == status
    payload = json.loads(response.content)
    assert payload["code"] == code
    assert isinstance(payload["message"], str)
    assert "bug" not in payload["message"]  # no internals leak from a 500
    if code == "validation_error":
        assert payload["details"] == [{"loc": ["body", "x"], "msg": "Field required"}]


def test_home_page_is_the_web_chat(client: Client) -> None:
    response = client.get("/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert '<script type="module" src="/static/chat/app.js"' in page
    assert 'data-worker="/static/chat/worker.js"' in page
    # No inline script, style or handler: every script has a src, and the CSP forbids the rest.
    assert page.count("<script") == page.count('<script type="module" src=')
    assert "<style" not in page and " style=" not in page and " onclick=" not in page


def _policy(response: Any) -> dict[str, str]:
    policy = {}
    for directive in response["Content-Security-Policy"].split("; "):
        name, _, value = directive.partition(" ")
        policy[name] = value
    return policy


def test_widget_page_may_be_framed_and_nothing_else_changes(client: Client) -> None:
    chat, widget = client.get("/"), client.get("/widget")

    assert widget.status_code == 200
    page = widget.content.decode()
    assert '<script type="module" src="/static/widget/widget.js"' in page
    assert page.count("<script") == page.count('<script type="module" src=')
    assert "<style" not in page and " style=" not in page and " onclick=" not in page
    assert "X-Frame-Options" not in widget
    assert _policy(widget) == {**_policy(chat), "frame-ancestors": "*"}
    for name in ("X-Content-Type-Options", "Referrer-Policy", "Permissions-Policy"):
        assert widget[name] == chat[name]


@override_settings(VEILPOST_WIDGET_FRAME_ANCESTORS=["https://shop.example"])
def test_widget_framing_follows_the_setting(client: Client) -> None:
    assert _policy(client.get("/widget"))["frame-ancestors"] == "https://shop.example"


def test_security_headers(client: Client) -> None:
    response = client.get("/")

    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "no-referrer"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    policy = {}
    for directive in response["Content-Security-Policy"].split("; "):
        name, _, value = directive.partition(" ")
        policy[name] = value
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self' 'wasm-unsafe-eval'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in response["Content-Security-Policy"]
    assert "'unsafe-eval'" not in response["Content-Security-Policy"]
