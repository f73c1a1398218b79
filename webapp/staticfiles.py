"""Serving /static/ from Daphne itself (DEBUG, or VEILPOST_SERVE_STATIC=1; see settings)."""

from __future__ import annotations

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.exceptions import SuspiciousOperation
from django.core.handlers.exception import response_for_exception
from django.http import FileResponse, HttpRequest, HttpResponse

# How long browsers may keep static files without asking again. The Pyodide runtime is a
# pinned npm package (a new version is a new deployment, and a day is the longest a tab runs
# an old one); everything else (the chat, the worker, the veilpost wheel, rebuilt by every
# set-up) is revalidated on every load, cheaply: 304 Not Modified.
PYODIDE_MAX_AGE = 24 * 3600


class StaticFilesHandler(ASGIStaticFilesHandler):
    """Django's ASGI static files handler, except that a path leading out of the static
    folders (``/static/x/../../settings.py``) is answered 400 instead of raising a 500, and
    that responses say how long they may be cached (see ``PYODIDE_MAX_AGE``)."""

    def serve(self, request: HttpRequest) -> HttpResponse | FileResponse:
        try:
            response = super().serve(request)
        except SuspiciousOperation as exc:
            return response_for_exception(request, exc)
        if response.status_code in (200, 304):
            if request.path.startswith("/static/pyodide/"):
                response["Cache-Control"] = f"public, max-age={PYODIDE_MAX_AGE}"
            else:
                response["Cache-Control"] = "no-cache"
            response["X-Content-Type-Options"] = "nosniff"
        return response
