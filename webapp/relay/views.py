"""Server-rendered pages of the relay app."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from webapp import __version__


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    """A placeholder home page until the web chat lands in static/."""
    return render(request, "relay/home.html", {"version": __version__})
