"""Project middleware."""

from __future__ import annotations

import json
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class JsonMethodNotAllowedMiddleware:
    """Give /api/ a JSON 405, like its other errors: django-ninja answers a wrong method with
    Django's plain ``HttpResponseNotAllowed``, outside its exception handlers."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code == 405 and request.path.startswith("/api/"):
            allowed = response.get("Allow", "")
            body = {
                "code": "method_not_allowed",
                "message": f"{request.method} is not allowed here; allowed: {allowed}",
            }
            response = HttpResponse(json.dumps(body), status=405, content_type="application/json")
            response["Allow"] = allowed
        return response
