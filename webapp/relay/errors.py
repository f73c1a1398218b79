"""The relay's errors: each carries a machine-readable code, a human message naming the check
that failed and the value that failed it, and optional details for the client.

The REST API answers them with their HTTP ``status``; the WebSocket consumer with an ``error``
frame. Every code is listed in ``docs/protocol.md``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class RelayError(Exception):
    """Base class: the client sent something the relay refuses."""

    status: ClassVar[int] = 400

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


class InvalidInput(RelayError):
    """Malformed or out-of-range input."""

    status = 400


class AuthenticationFailed(RelayError):
    """No valid credentials: bad signature, unknown or used challenge, expired token."""

    status = 401


class Forbidden(RelayError):
    """Authenticated, but this belongs to someone else."""

    status = 403


class NotFound(RelayError):
    status = 404


class Conflict(RelayError):
    """Valid on its own, but it conflicts with what is stored (an epoch's commit, a version)."""

    status = 409


class TooLarge(RelayError):
    status = 413


class RateLimited(RelayError):
    status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__("rate_limited", message, retry_after=round(retry_after, 3))
