"""Checker for ``psk_secret.json``: combining external PSKs into ``psk_secret`` (RFC 9420
§8.4)."""

from __future__ import annotations

from veilpost.crypto import CryptoProvider
from veilpost.mls.psk import PreSharedKeyID, PSKType, psk_secret
from veilpost.mls.vectors import Case, checker, expect, h, suite_for


@checker("psk_secret")
def check_psk_secret(case: Case, provider: CryptoProvider) -> None:
    """Build an external ``PreSharedKeyID`` per entry of ``psks`` and check ``psk_secret``."""
    suite = suite_for(case, provider)
    psks = [
        (
            PreSharedKeyID(PSKType.EXTERNAL, psk_id=h(p["psk_id"]), psk_nonce=h(p["psk_nonce"])),
            h(p["psk"]),
        )
        for p in case["psks"]
    ]
    expect(psk_secret(suite, psks), h(case["psk_secret"]), f"psk_secret of {len(psks)} PSKs")
