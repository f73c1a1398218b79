"""Checker for ``key-schedule.json``: the key schedule over several epochs (RFC 9420 §8)."""

from __future__ import annotations

from veilpost.codec import encode
from veilpost.crypto import CryptoProvider
from veilpost.mls.group_context import GroupContext
from veilpost.mls.key_schedule import (
    derive_epoch_secret,
    derive_epoch_secrets,
    derive_joiner_secret,
    derive_welcome_secret,
)
from veilpost.mls.vectors import Case, checker, expect, h, suite_for

_EPOCH_SECRETS = (
    "sender_data_secret",
    "encryption_secret",
    "exporter_secret",
    "epoch_authenticator",
    "external_secret",
    "confirmation_key",
    "membership_key",
    "resumption_psk",
    "init_secret",
)


@checker("key-schedule")
def check_key_schedule(case: Case, provider: CryptoProvider) -> None:
    """Run the key schedule from ``initial_init_secret`` through every epoch, checking the
    GroupContext encoding, every secret, ``external_pub`` and one ``MLS-Exporter`` output."""
    suite = suite_for(case, provider)
    group_id = h(case["group_id"])
    init_secret = h(case["initial_init_secret"])
    for epoch, e in enumerate(case["epochs"]):
        where = f"epoch {epoch}"
        context = encode(
            GroupContext(
                cipher_suite=int(case["cipher_suite"]),
                group_id=group_id,
                epoch=epoch,
                tree_hash=h(e["tree_hash"]),
                confirmed_transcript_hash=h(e["confirmed_transcript_hash"]),
                extensions=[],
            )
        )
        expect(context, h(e["group_context"]), f"{where}: group_context")
        psk_secret = h(e["psk_secret"])
        joiner_secret = derive_joiner_secret(suite, init_secret, h(e["commit_secret"]), context)
        expect(joiner_secret, h(e["joiner_secret"]), f"{where}: joiner_secret")
        welcome_secret = derive_welcome_secret(suite, joiner_secret, psk_secret)
        expect(welcome_secret, h(e["welcome_secret"]), f"{where}: welcome_secret")
        epoch_secret = derive_epoch_secret(suite, joiner_secret, context, psk_secret)
        secrets = derive_epoch_secrets(suite, epoch_secret)
        for name in _EPOCH_SECRETS:
            expect(getattr(secrets, name), h(e[name]), f"{where}: {name}")
        expect(secrets.external_pub, h(e["external_pub"]), f"{where}: external_pub")
        exporter = e["exporter"]
        # The label is used as the string it is in the file (it happens to look like hex).
        exported = secrets.export(exporter["label"], h(exporter["context"]), exporter["length"])
        expect(exported, h(exporter["secret"]), f"{where}: exporter.secret")
        init_secret = secrets.init_secret
