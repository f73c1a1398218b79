"""Errors of the messaging client. Each says which check failed, in words and in ``code``."""

from __future__ import annotations

from typing import Any

__all__ = [
    "ClientError",
    "ConversationNotFound",
    "EpochConflict",
    "IdentityError",
    "IdentityNeeded",
    "NotAMember",
    "PermissionDenied",
    "RelayError",
    "UnknownRecipient",
]


class ClientError(Exception):
    """Base of the client's errors; ``code`` is a short machine-readable name."""

    code = "client_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class IdentityError(ClientError):
    """An identity record, a credential or an address binding does not verify."""

    code = "identity_invalid"


class IdentityNeeded(Exception):
    """Raised inside MLS validation when a member's inbox record is not known (or is stale):
    the client fetches it and processes the message again. Never escapes the client."""

    def __init__(self, *inbox_ids: str) -> None:
        super().__init__(f"the identity records of inboxes {', '.join(inbox_ids)} are needed")
        self.inbox_ids = inbox_ids


class PermissionDenied(ClientError):
    """The group's permission policy does not allow this change by this member."""

    code = "permission_denied"


class ConversationNotFound(ClientError):
    code = "conversation_not_found"


class NotAMember(ClientError):
    """This installation is no longer a member of the conversation."""

    code = "not_a_member"


class UnknownRecipient(ClientError):
    """An inbox id or address that the relay does not know, or with no installation that
    can be added (no key package)."""

    code = "unknown_recipient"


class RelayError(ClientError):
    """The relay refused a request; ``code`` is the relay's error code (``docs/protocol.md``)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}", code=code)
        self.status = status
        self.extra = extra or {}


class EpochConflict(RelayError):
    """The relay already has a commit for this epoch: process the winner, then retry."""

    def __init__(self, message: str, *, epoch: int, current_epoch: int) -> None:
        super().__init__("epoch_conflict", message, extra={"epoch": epoch})
        self.epoch = epoch
        self.current_epoch = current_epoch
