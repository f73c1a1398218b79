"""Origin check for the relay's WebSocket."""

from __future__ import annotations

from typing import Any

from channels.security.websocket import OriginValidator
from django.conf import settings


class BrowserOriginValidator(OriginValidator):  # type: ignore[misc]  # channels is untyped
    """Channels' ``OriginValidator``, except that a handshake without an Origin header passes.

    Browsers always send Origin on a WebSocket handshake, so pages of other sites are still
    refused (cross-site WebSocket hijacking). Agents and the CLI send no Origin, and anything
    that is not a browser could send any Origin it liked, so refusing them would add no
    protection; they authenticate like every client.
    """

    def valid_origin(self, parsed_origin: Any) -> bool:
        if parsed_origin is None:
            return True
        return bool(self.validate_origin(parsed_origin))


def AllowedHostsOriginValidator(application: Any) -> BrowserOriginValidator:
    """Like channels' factory of the same name: browsers' Origin must be in ALLOWED_HOSTS."""
    allowed_hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
    return BrowserOriginValidator(application, allowed_hosts)
