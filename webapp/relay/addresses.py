"""Address bindings: reach an inbox by an Ethereum ``0x`` address.

A wallet binds its address to an inbox by signing ``address_binding_text(inbox, issued_at)``
(``veilpost.protocol``) with EIP-191 ``personal_sign``. The relay recovers the signer and stores
the binding only when the signer is the address; it serves bindings with their signatures, so
clients verify them again without trusting the relay. Bindings are public.

An address names one inbox at a time: a new valid binding of the address to another inbox
replaces the old one if it was issued later (only the wallet's key can make one, so its owner
decided; an old signature replayed is ``stale_binding``). An inbox may
have several addresses.
"""

from __future__ import annotations

import re
import time

from django.db import transaction
from django.utils import timezone

from veilpost.crypto.errors import SignatureVerificationError
from veilpost.crypto.ethereum import checksum_address, recover_message_signer
from veilpost.protocol import address_binding_text

from .directory import get_inbox
from .errors import Conflict, Forbidden, InvalidInput, NotFound
from .models import AddressBinding, Inbox, Installation

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
MAX_CLOCK_SKEW_SECONDS = 300


def check_address(value: str) -> str:
    """The EIP-55 checksummed form of ``value``, or ``InvalidInput`` (``invalid_address``).

    ``value`` is ``0x`` and 40 hex digits, in any one case (all lower, all upper) or in mixed
    case, which is then an EIP-55 checksum and must be the right one.
    """
    if not _ADDRESS.fullmatch(value):
        raise InvalidInput(
            "invalid_address",
            f"address {value[:80]!r} is not an Ethereum address ('0x' and 40 hex digits)",
        )
    checksummed = checksum_address(value)
    digits = value[2:]
    if digits not in (digits.lower(), digits.upper()) and value != checksummed:
        raise InvalidInput(
            "invalid_address",
            f"address {value} is in mixed case but not its EIP-55 checksum ({checksummed})",
        )
    return checksummed


def bind_address(
    installation: Installation, inbox_id: str, address: str, signature: bytes, issued_at: int
) -> AddressBinding:
    """Bind ``address`` to the caller's inbox ``inbox_id`` with the wallet's signature made at
    Unix time ``issued_at``, replacing the address's binding (to this inbox or another) if that
    one is older."""
    inbox = get_inbox(inbox_id)
    if installation.inbox_id != inbox.pk:
        raise Forbidden(
            "not_your_inbox", f"installation {installation.pk} is not in inbox {inbox_id}"
        )
    checksummed = check_address(address)
    now = int(time.time())
    if not 0 < issued_at <= now + MAX_CLOCK_SKEW_SECONDS:
        raise InvalidInput(
            "invalid_binding_time",
            f"issued_at {issued_at} is not a Unix time up to {MAX_CLOCK_SKEW_SECONDS} s from now",
        )
    message = address_binding_text(inbox.pk, issued_at).encode("utf-8")
    try:
        signer = recover_message_signer(message, signature)
    except SignatureVerificationError as exc:
        raise InvalidInput("bad_signature", f"the address binding signature: {exc}") from None
    if signer != checksummed:
        raise InvalidInput(
            "bad_signature",
            f"the signature of the binding text for inbox {inbox.pk} was made by {signer},"
            f" not by {checksummed}",
        )
    with transaction.atomic():
        current = AddressBinding.objects.select_for_update().filter(pk=checksummed).first()
        if current is not None and current.issued_at >= issued_at:
            if current.inbox_id == inbox.pk and bytes(current.signature) == signature:
                return current  # the same binding again
            raise Conflict(
                "stale_binding",
                f"address {checksummed} has a binding issued at {current.issued_at};"
                f" a new one must be issued later than that, not at {issued_at}",
                current_issued_at=current.issued_at,
            )
        binding, _ = AddressBinding.objects.update_or_create(
            address=checksummed,
            defaults={
                "inbox": inbox,
                "signature": signature,
                "issued_at": issued_at,
                "bound_at": timezone.now(),
            },
        )
    return binding


def get_binding(address: str) -> AddressBinding:
    """The binding of ``address`` (in any accepted spelling), or ``unknown_address``."""
    checksummed = check_address(address)
    binding = AddressBinding.objects.filter(pk=checksummed).first()
    if binding is None:
        raise NotFound("unknown_address", f"no inbox is bound to address {checksummed}")
    return binding


def inbox_addresses(inbox: Inbox) -> list[str]:
    """The addresses bound to ``inbox``, oldest binding first."""
    return list(
        AddressBinding.objects.filter(inbox=inbox)
        .order_by("bound_at", "address")
        .values_list("address", flat=True)
    )
