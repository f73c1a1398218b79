"""REST endpoints of the relay app, mounted under /api/v1/ by ``webapp.api``."""

from __future__ import annotations

import logging

from django.db import connection
from django.http import HttpRequest
from ninja import Router, Status

from webapp import __version__

from .schemas import DatabaseHealth, HealthOut

logger = logging.getLogger(__name__)

router = Router(tags=["relay"])


@router.get(
    "/health",
    response={200: HealthOut, 503: HealthOut},
    exclude_none=True,
    summary="Relay health",
)
def health(request: HttpRequest) -> Status[HealthOut]:
    """Report the relay version and whether the database answers a query.

    503 (with the error's class name) when the database cannot be reached.
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # a health check reports every failure, it never raises
        logger.warning("health check: database unavailable", exc_info=True)
        database = DatabaseHealth(
            status="error", vendor=connection.vendor, error=type(exc).__name__
        )
        return Status(503, HealthOut(status="error", version=__version__, database=database))
    database = DatabaseHealth(status="ok", vendor=connection.vendor)
    return Status(200, HealthOut(status="ok", version=__version__, database=database))
