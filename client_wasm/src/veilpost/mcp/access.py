"""Who may call an MCP server served over Veilpost: :class:`AllowList`.

Entries are inbox ids (32 lowercase hex, as ``veilpost identity`` prints) or Ethereum
addresses (``0x…``). A caller is known by the inbox that MLS authenticates as the sender of
its messages. It is allowed when that inbox is listed, or when one of the addresses bound in
its identity record is: the record is verified by this client (each binding is the wallet's
EIP-191 signature naming that inbox), never taken on the relay's word. ``*`` allows everyone.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from veilpost.client.errors import ClientError
from veilpost.crypto.ethereum import checksum_address
from veilpost.protocol import is_installation_id

if TYPE_CHECKING:
    from veilpost.client.client import Client

__all__ = ["AllowList", "AllowListError"]

log = logging.getLogger("veilpost.mcp")

RECORD_REFRESH_SECONDS = 60.0
"""How often, at most, a refused caller's identity record is fetched again (for an address
bound since it was cached)."""


class AllowListError(ValueError):
    """An allow-list entry is neither an inbox id, nor a ``0x`` address, nor ``*``."""


class AllowList:
    """The inboxes and addresses that may call an MCP server (see the module documentation).

    An empty list allows nobody.
    """

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.everyone = False
        self.inboxes: frozenset[str] = frozenset()
        self.addresses: frozenset[str] = frozenset()
        inboxes: set[str] = set()
        addresses: set[str] = set()
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            if entry == "*":
                self.everyone = True
            elif entry.lower().startswith("0x"):
                try:
                    addresses.add(checksum_address(entry))
                except ValueError as exc:
                    raise AllowListError(f"allow-list entry {entry!r}: {exc}") from None
            elif is_installation_id(entry.lower()):
                inboxes.add(entry.lower())
            else:
                raise AllowListError(
                    f"allow-list entry {entry!r} is neither an inbox id (32 hex characters),"
                    " nor a 0x address, nor *"
                )
        self.inboxes, self.addresses = frozenset(inboxes), frozenset(addresses)
        self._refreshed: dict[str, float] = {}

    @classmethod
    def parse(cls, text: str) -> AllowList:
        """Entries separated by commas or white space (an environment variable's value)."""
        return cls(part for part in re.split(r"[\s,]+", text) if part)

    @classmethod
    def of(cls, allow: AllowList | Iterable[str] | str) -> AllowList:
        """``allow`` as an allow-list: one already, entries, or text for :meth:`parse`."""
        if isinstance(allow, AllowList):
            return allow
        if isinstance(allow, str):
            return cls.parse(allow)
        return cls(allow)

    def __bool__(self) -> bool:
        return self.everyone or bool(self.inboxes or self.addresses)

    def __repr__(self) -> str:
        shown = ["*"] if self.everyone else [*sorted(self.inboxes), *sorted(self.addresses)]
        return f"AllowList({shown!r})"

    def decide(self, inbox_id: str, addresses: Iterable[str] = ()) -> bool:
        """Whether ``inbox_id``, with these verified bound ``addresses``, is allowed."""
        if self.everyone or inbox_id.lower() in self.inboxes:
            return True
        return any(checksum_address(a) in self.addresses for a in addresses)

    async def allows(self, client: Client, inbox_id: str) -> bool:
        """Whether the sender inbox ``inbox_id`` may call; looks at its verified identity
        record when addresses are listed (fetched again, at most once a minute, for a
        caller that is refused with the cached one)."""
        if self.decide(inbox_id):
            return True
        if not self.addresses:
            return False
        try:
            record = await client.identity(inbox_id)
            if self.decide(inbox_id, record.address_list()):
                return True
            now = time.monotonic()
            if (
                now - self._refreshed.get(inbox_id, -RECORD_REFRESH_SECONDS)
                < RECORD_REFRESH_SECONDS
            ):
                return False
            self._refreshed[inbox_id] = now
            record = await client.identity(inbox_id, refresh=True)
        except (ClientError, OSError, TimeoutError) as exc:
            log.warning("cannot check the identity record of inbox %s: %s", inbox_id, exc)
            return False
        return self.decide(inbox_id, record.address_list())
