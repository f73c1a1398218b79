"""The relay's REST API (django-ninja), mounted at /api/v1/ by ``webapp.urls``.

Every error answer is JSON ``{"code": ..., "message": ...}`` (validation errors add
``details``, some relay errors other fields); bad input gets a 4xx, never a 500 or an HTML page.
The protocol, with every error code, is in ``docs/protocol.md``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import HttpError, ValidationError

from webapp import __version__
from webapp.relay.api import router as relay_router
from webapp.relay.errors import RelayError

logger = logging.getLogger(__name__)

api = NinjaAPI(
    title="Veilpost relay API",
    version=__version__,
    description=(
        "REST API of the Veilpost relay: authentication, the directory (installations,"
        " identity records, key packages, address bindings), conversations, history and blobs"
        " (encrypted attachments). The WebSocket protocol at /ws/v1 and every error code are"
        " described in docs/protocol.md."
    ),
    urls_namespace="api-v1",
)
api.add_router("/", relay_router)

# Error codes for the statuses that ninja raises as HttpError.
_HTTP_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    429: "rate_limited",
}


def error_response(
    request: HttpRequest, status: int, code: str, message: str, **extra: Any
) -> HttpResponse:
    return api.create_response(request, {"code": code, "message": message, **extra}, status=status)


@api.exception_handler(RelayError)
def relay_error(request: HttpRequest, exc: RelayError) -> HttpResponse:
    return error_response(request, exc.status, exc.code, exc.message, **exc.details)


@api.exception_handler(RequestDataTooBig)
def request_too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return error_response(request, 413, "too_large", "The request body is too large.")


@api.exception_handler(SuspiciousOperation)
def suspicious_request(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
    return error_response(request, 400, "bad_request", "The request is not valid.")


@api.exception_handler(ValidationError)
def validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return error_response(
        request, 422, "validation_error", "The request is not valid.", details=exc.errors
    )


@api.exception_handler(Http404)
def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(request, 404, "not_found", "Not found.")


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    code = _HTTP_ERROR_CODES.get(exc.status_code, "error")
    return error_response(request, exc.status_code, code, exc.message)


@api.exception_handler(Exception)
def internal_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("unhandled error in %s %s", request.method, request.path)
    return error_response(request, 500, "internal_error", "Internal server error.")


def api_not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    """JSON 404 for /api/ paths that no endpoint matches (Django's resolver never reaches ninja)."""
    return error_response(request, 404, "not_found", f"No API endpoint at {request.path}.")
