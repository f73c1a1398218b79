"""Checker for ``welcome.json``: a joiner opens a Welcome (RFC 9420 §12.4.3.1).

Find the entry for ``key_package``, decrypt the group secrets with ``init_priv`` and the
GroupInfo with the welcome key, verify the GroupInfo's signature with ``signer_pub``, and check
its confirmation tag with the ``confirmation_key`` of the epoch derived from ``joiner_secret``
and no PSKs — all done by :func:`~veilpost.mls.welcome_processing.open_welcome`. The checker
recomputes the tag once more from the returned epoch secrets, as the README describes.
"""

from __future__ import annotations

from veilpost.codec import DecodeError, decode
from veilpost.crypto import CryptoProvider
from veilpost.mls.errors import ProtocolError
from veilpost.mls.framing import MLSMessage
from veilpost.mls.key_package import KeyPackage
from veilpost.mls.vectors import Case, VectorMismatch, checker, expect, h, suite_for
from veilpost.mls.welcome import Welcome
from veilpost.mls.welcome_processing import open_welcome


@checker("welcome")
def check_welcome(case: Case, provider: CryptoProvider) -> None:
    """Open the case's Welcome with its key package, ``init_priv`` and ``signer_pub``."""
    suite = suite_for(case, provider)
    signer_pub = h(case["signer_pub"])
    try:
        key_package = decode(MLSMessage, h(case["key_package"])).body
        welcome = decode(MLSMessage, h(case["welcome"])).body
    except DecodeError as exc:
        raise VectorMismatch(f"key_package or welcome does not decode: {exc}") from exc
    if not isinstance(key_package, KeyPackage) or not isinstance(welcome, Welcome):
        raise VectorMismatch("key_package and welcome must be a KeyPackage and a Welcome")
    try:
        opened = open_welcome(
            suite,
            welcome,
            key_package,
            h(case["init_priv"]),
            signer_signature_key=lambda group_info: signer_pub,
        )
    except ProtocolError as exc:
        raise VectorMismatch(f"opening the Welcome: {exc.check}: {exc}") from exc
    expect(opened.group_secrets.psks, [], "group_secrets.psks")
    context = opened.group_info.group_context
    expect(
        opened.group_info.confirmation_tag,
        opened.epoch_secrets.confirmation_tag(context.confirmed_transcript_hash),
        "group_info.confirmation_tag",
    )
