"""Request and response schemas of the relay's REST API."""

from __future__ import annotations

from typing import Literal

from ninja import Schema

Status = Literal["ok", "error"]


class DatabaseHealth(Schema):
    status: Status
    vendor: str
    error: str | None = None  # the exception's class name when status is "error"


class HealthOut(Schema):
    status: Status
    version: str
    database: DatabaseHealth


class ErrorOut(Schema):
    """The body of every error answer on /api/v1."""

    code: str
    message: str
