"""Server-rendered pages of the relay app."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_safe

from webapp import __version__
from webapp.relay.csp import CHAT_CSP, widget_csp

CHAT_HEADERS = {
    "Content-Security-Policy": CHAT_CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}


def _page(request: HttpRequest, template: str, headers: dict[str, str]) -> HttpResponse:
    response = render(request, template, {"version": __version__})
    for name, value in headers.items():
        response[name] = value
    return response


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    """The web chat: an ES-module page whose cryptography runs in a worker (static/chat/)."""
    return _page(request, "relay/chat.html", CHAT_HEADERS)


@require_safe
@xframe_options_exempt
def widget(request: HttpRequest) -> HttpResponse:
    """The agent widget's page, framed by other sites (static/widget/): a DM with one agent,
    the same crypto worker as the chat. ``VEILPOST_WIDGET_FRAME_ANCESTORS`` says who may frame
    it."""
    policy = widget_csp(settings.VEILPOST_WIDGET_FRAME_ANCESTORS)
    return _page(request, "relay/widget.html", {**CHAT_HEADERS, "Content-Security-Policy": policy})
