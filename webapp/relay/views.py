"""Server-rendered pages of the relay app."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from webapp import __version__

# The web chat's Content-Security-Policy: scripts only from this origin (Pyodide compiles
# WebAssembly: 'wasm-unsafe-eval', and no 'unsafe-eval'), no inline script or style, no plugins,
# connections only back to this relay (its WebSocket included), images from this origin and
# blob: URLs (attachment previews), never framed by other sites.
CHAT_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "worker-src 'self'",
        "connect-src 'self'",
        "img-src 'self' blob:",
        "style-src 'self'",
        "font-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ]
)
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
