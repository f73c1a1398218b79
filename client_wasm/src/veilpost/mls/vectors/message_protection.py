"""Checker for ``message-protection.json``: PublicMessage and PrivateMessage of a proposal, a
commit and application data, both the vector's and our own (RFC 9420 §6).

The sender is the member at leaf 1 of a two-member group. For each content type the checker
unprotects the vector's messages, then protects the raw content itself and unprotects the
result: as a PublicMessage (which must be refused for application data) and as a
PrivateMessage (with a fresh sender tree and a fresh receiver tree).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from veilpost.codec import DecodeError, decode, encode
from veilpost.crypto import CipherSuite, CryptoProvider
from veilpost.mls.commit import Commit
from veilpost.mls.errors import MlsError, ProtocolError, UsageError
from veilpost.mls.framing import (
    AuthenticatedContent,
    ContentBody,
    FramedContent,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
    Sender,
    WireFormat,
)
from veilpost.mls.group_context import GroupContext
from veilpost.mls.message_protection import (
    protect_private_message,
    protect_public_message,
    sign_framed_content,
    unprotect_private_message,
    unprotect_public_message,
)
from veilpost.mls.proposals import Proposal
from veilpost.mls.secret_tree import SecretTree
from veilpost.mls.vectors import Case, VectorMismatch, checker, expect, h, suite_for

SENDER_LEAF = 1
N_LEAVES = 2
M = TypeVar("M", PublicMessage, PrivateMessage)


@contextmanager
def _step(what: str) -> Iterator[None]:
    """Report a decoding or protocol error inside ``what`` as a mismatch naming the step."""
    try:
        yield
    except ProtocolError as exc:
        raise VectorMismatch(f"{what}: {exc.check}: {exc}") from exc
    except (DecodeError, MlsError) as exc:
        raise VectorMismatch(f"{what}: {type(exc).__name__}: {exc}") from exc


def _message(data: bytes, cls: type[M], what: str) -> M:
    with _step(what):
        body = decode(MLSMessage, data).body
    if not isinstance(body, cls):
        raise VectorMismatch(f"{what} is a {type(body).__name__}, not a {cls.__name__}")
    return body


def _body(name: str, raw: bytes) -> ContentBody:
    with _step(name):
        if name == "proposal":
            return decode(Proposal, raw)
        if name == "commit":
            return decode(Commit, raw)
    return raw


@checker("message-protection")
def check_message_protection(case: Case, provider: CryptoProvider) -> None:
    """For ``proposal``, ``commit`` and ``application``: unprotect the vector's messages,
    protect the raw content ourselves and unprotect that (§6.1–§6.3)."""
    suite = suite_for(case, provider)
    context = GroupContext(
        cipher_suite=int(case["cipher_suite"]),
        group_id=h(case["group_id"]),
        epoch=int(case["epoch"]),
        tree_hash=h(case["tree_hash"]),
        confirmed_transcript_hash=h(case["confirmed_transcript_hash"]),
        extensions=[],
    )
    signature_pub = h(case["signature_pub"])
    keys = _Keys(
        suite,
        context,
        signature_priv=h(case["signature_priv"]),
        encryption_secret=h(case["encryption_secret"]),
        sender_data_secret=h(case["sender_data_secret"]),
        membership_key=h(case["membership_key"]),
        member_signature_key=lambda leaf: signature_pub if leaf == SENDER_LEAF else None,
    )
    for name in ("proposal", "commit", "application"):
        raw = h(case[name])
        body = _body(name, raw)
        if name != "application":
            public = _message(h(case[f"{name}_pub"]), PublicMessage, f"{name}_pub")
            with _step(f"unprotecting {name}_pub"):
                received = keys.unprotect_public(public)
            _expect_body(received, raw, f"{name}_pub")
        keys.check_own_public(name, body, raw)
        private = _message(h(case[f"{name}_priv"]), PrivateMessage, f"{name}_priv")
        with _step(f"unprotecting {name}_priv"):
            received = keys.unprotect_private(private, keys.tree())
        _expect_body(received, raw, f"{name}_priv")
        keys.check_own_private(name, body, raw)


def _expect_body(received: AuthenticatedContent, raw: bytes, what: str) -> None:
    body = received.content.body
    expect(body if isinstance(body, bytes) else encode(body), raw, f"{what} content")
    expect(received.content.sender, Sender.member(SENDER_LEAF), f"{what} sender")


class _Keys:
    """The epoch of one case: its group context, keys and the sender's signature key pair."""

    def __init__(
        self,
        suite: CipherSuite,
        context: GroupContext,
        *,
        signature_priv: bytes,
        encryption_secret: bytes,
        sender_data_secret: bytes,
        membership_key: bytes,
        member_signature_key: Callable[[int], bytes | None],
    ) -> None:
        self.suite = suite
        self.context = context
        self.signature_priv = signature_priv
        self.encryption_secret = encryption_secret
        self.sender_data_secret = sender_data_secret
        self.membership_key = membership_key
        self.member_signature_key = member_signature_key

    def tree(self, own_leaf: int | None = None) -> SecretTree:
        return SecretTree(self.suite, self.encryption_secret, N_LEAVES, own_leaf=own_leaf)

    def sign(self, wire_format: WireFormat, body: ContentBody) -> AuthenticatedContent:
        content = FramedContent(
            self.context.group_id, self.context.epoch, Sender.member(SENDER_LEAF), b"", body
        )
        tag = bytes(self.suite.hash_size) if isinstance(body, Commit) else None
        return sign_framed_content(
            self.suite,
            self.signature_priv,
            wire_format,
            content,
            self.context,
            confirmation_tag=tag,
        )

    def unprotect_public(self, message: PublicMessage) -> AuthenticatedContent:
        return unprotect_public_message(
            self.suite,
            message,
            group_context=self.context,
            membership_key=self.membership_key,
            member_signature_key=self.member_signature_key,
        )

    def unprotect_private(self, message: PrivateMessage, tree: SecretTree) -> AuthenticatedContent:
        return unprotect_private_message(
            self.suite,
            message,
            group_context=self.context,
            secret_tree=tree,
            sender_data_secret=self.sender_data_secret,
            member_signature_key=self.member_signature_key,
        )

    def check_own_public(self, name: str, body: ContentBody, raw: bytes) -> None:
        signed = self.sign(WireFormat.MLS_PUBLIC_MESSAGE, body)
        try:
            public = protect_public_message(
                self.suite, signed, group_context=self.context, membership_key=self.membership_key
            )
        except UsageError as exc:
            if name == "application":
                return  # as required: application data is never a PublicMessage
            raise VectorMismatch(f"protecting our {name} as a PublicMessage: {exc}") from exc
        if name == "application":
            raise VectorMismatch("application data was protected as a PublicMessage")
        encoded = encode(MLSMessage(public))
        with _step(f"unprotecting our {name} PublicMessage"):
            received = self.unprotect_public(_message(encoded, PublicMessage, f"our {name}"))
        _expect_body(received, raw, f"our {name} PublicMessage")
        expect(received.auth, signed.auth, f"our {name} PublicMessage auth")

    def check_own_private(self, name: str, body: ContentBody, raw: bytes) -> None:
        signed = self.sign(WireFormat.MLS_PRIVATE_MESSAGE, body)
        with _step(f"protecting our {name} as a PrivateMessage"):
            private = protect_private_message(
                self.suite,
                signed,
                secret_tree=self.tree(own_leaf=SENDER_LEAF),
                sender_data_secret=self.sender_data_secret,
            )
        encoded = encode(MLSMessage(private))
        with _step(f"unprotecting our {name} PrivateMessage"):
            received = self.unprotect_private(
                _message(encoded, PrivateMessage, f"our {name}"), self.tree()
            )
        _expect_body(received, raw, f"our {name} PrivateMessage")
        expect(received.auth, signed.auth, f"our {name} PrivateMessage auth")
