"""Server-rendered pages of the relay app."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from webapp import __version__
from webapp.relay.csp import CHAT_CSP

CHAT_HEADERS = {
    "Content-Security-Policy": CHAT_CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    """The web chat: an ES-module page whose cryptography runs in a worker (static/chat/)."""
    response = render(request, "relay/chat.html", {"version": __version__})
    for name, value in CHAT_HEADERS.items():
        response[name] = value
    return response
