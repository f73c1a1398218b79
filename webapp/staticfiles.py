"""Serving /static/ from Daphne itself (DEBUG, or VEILPOST_SERVE_STATIC=1; see settings)."""

from __future__ import annotations

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.exceptions import SuspiciousOperation
from django.core.handlers.exception import response_for_exception
from django.http import FileResponse, HttpRequest, HttpResponse


class StaticFilesHandler(ASGIStaticFilesHandler):
    """Django's ASGI static files handler, except that a path leading out of the static
    folders (``/static/x/../../settings.py``) is answered 400 instead of raising a 500."""

    def serve(self, request: HttpRequest) -> HttpResponse | FileResponse:
        try:
            return super().serve(request)
        except SuspiciousOperation as exc:
            return response_for_exception(request, exc)
