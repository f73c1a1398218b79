"""Message protection (RFC 9420 §6): signing framed content, and PublicMessage / PrivateMessage.

Theory of operation
-------------------

Every proposal, commit and application message is first a :class:`FramedContent`. Its sender
signs it (``SignWithLabel(., "FramedContentTBS", FramedContentTBS)``, §6.1) into an
:class:`AuthenticatedContent`; a commit also gets its confirmation tag, which the caller computes
from the new epoch's key schedule after signing (:func:`with_confirmation_tag`). The signature
covers the wire format, so the sender decides up front how the content travels:

- as a :class:`PublicMessage` (§6.2): signed, not encrypted, and for member senders tagged with
  ``MAC(membership_key, AuthenticatedContentTBM)``. Application data never travels this way;
- as a :class:`PrivateMessage` (§6.3): the content, its signature (and confirmation tag) and
  zero padding are AEAD-encrypted with the key and nonce of the next generation of the sender's
  handshake or application ratchet (:mod:`veilpost.mls.secret_tree`), the nonce first XORed with
  a fresh four-byte ``reuse_guard``; the sender's leaf index, the generation and the guard are
  themselves encrypted as ``SenderData`` under a key derived from ``sender_data_secret`` and the
  first ``KDF.Nh`` bytes of the ciphertext.

Receiving runs the same steps backwards and checks each one. The unprotect functions take the
current epoch's GroupContext and keys; a message for another group or epoch is refused first,
as choosing the right epoch's keys is the caller's job. For a PrivateMessage the ratchet key is
consumed only when everything checked — AEAD, padding *and* signature — so a forgery by another
member (every member can derive every ratchet key) cannot burn the genuine message's key.

The ratchet tree lives elsewhere: the caller gives the sender's signature key through a lookup,
``leaf_index -> signature public key`` (``None`` for a blank or absent leaf). Keys of
``external`` senders come from the group context's ``external_senders`` extension, those of
``new_member_commit`` and ``new_member_proposal`` senders from the message itself (the commit's
path leaf node, the Add's key package).

Confirmation tags are not checked here: they need the next epoch's ``confirmation_key``, which
only commit processing (§12.4.2) has.

Every refusal is a :class:`~veilpost.mls.errors.ProtocolError` (a
:class:`~veilpost.mls.errors.ValidationError` when the message decoded fine but breaks a rule)
whose ``check`` names the rule: ``message.group_id``, ``message.epoch``,
``public_message.application``, ``public_message.membership_tag``, ``framed_content.sender``,
``framed_content.signature``, ``private_message.sender_data``,
``private_message.sender_leaf_index``, ``private_message.aead``, ``private_message.content``,
``private_message.padding``, or the secret tree's ``secret_tree.*`` for generations it will not
give. Misuse of the API (wrong wire format, protecting application data as a PublicMessage …)
is a :class:`~veilpost.mls.errors.UsageError`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import replace

from veilpost.codec import DecodeError, Reader, Writer, encode
from veilpost.crypto import CipherSuite, CryptoError
from veilpost.mls._wire import decode_decrypted
from veilpost.mls.commit import Commit
from veilpost.mls.errors import ProtocolError, UsageError, ValidationError
from veilpost.mls.extensions import ExtensionType, decode_external_senders, find_extension
from veilpost.mls.framing import (
    AuthenticatedContent,
    AuthenticatedContentTBM,
    ContentBody,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    FramedContentTBS,
    PrivateContentAAD,
    PrivateMessage,
    PrivateMessageContent,
    PublicMessage,
    Sender,
    SenderData,
    SenderDataAAD,
    SenderType,
    WireFormat,
    content_type_of,
)
from veilpost.mls.group_context import GroupContext
from veilpost.mls.key_schedule import membership_tag
from veilpost.mls.proposals import Add, Proposal, ProposalType
from veilpost.mls.secret_tree import RatchetType, SecretTree, sender_data_key_and_nonce

__all__ = [
    "DEFAULT_PADDING",
    "EXTERNAL_SENDER_PROPOSAL_TYPES",
    "FRAMED_CONTENT_SIGNATURE_LABEL",
    "PaddingPolicy",
    "SignatureKeyLookup",
    "no_padding",
    "pad_to_multiple",
    "protect_private_message",
    "protect_public_message",
    "sign_framed_content",
    "unprotect_private_message",
    "unprotect_public_message",
    "verify_framed_content",
    "with_confirmation_tag",
]

FRAMED_CONTENT_SIGNATURE_LABEL = "FramedContentTBS"
REUSE_GUARD_SIZE = 4

SignatureKeyLookup = Callable[[int], bytes | None]
"""``leaf_index -> signature public key`` of the member at that leaf, ``None`` if the leaf is
blank or outside the tree."""

PaddingPolicy = Callable[[int], int]
"""Given the size of an encoded PrivateMessageContent without padding, the number of zero bytes
to append (§6.3.1, §15.1)."""

EXTERNAL_SENDER_PROPOSAL_TYPES = frozenset(
    {
        ProposalType.ADD,
        ProposalType.REMOVE,
        ProposalType.PSK,
        ProposalType.REINIT,
        ProposalType.GROUP_CONTEXT_EXTENSIONS,
    }
)
"""The proposal types an ``external`` sender may send (§12.1.8, column "Ext" of §17.4)."""

_SENDERS_WITH_CONTEXT = (SenderType.MEMBER, SenderType.NEW_MEMBER_COMMIT)


# -- padding (§6.3.1, §15.1) -------------------------------------------------------------------


def pad_to_multiple(block: int) -> PaddingPolicy:
    """A policy that pads the plaintext to a multiple of ``block`` bytes, so that ciphertext
    sizes reveal the content's size only to that granularity."""
    if block < 1:
        raise UsageError(f"padding block must be at least 1 byte, got {block}")

    def policy(length: int) -> int:
        return -length % block

    return policy


def no_padding(length: int) -> int:
    """A policy that adds no padding."""
    return 0


DEFAULT_PADDING: PaddingPolicy = pad_to_multiple(32)
"""Pad every PrivateMessage plaintext to a multiple of 32 bytes."""


# -- signing (§6.1) ----------------------------------------------------------------------------


def _tbs_context(sender: Sender, group_context: GroupContext | None) -> GroupContext | None:
    """The context that FramedContentTBS carries for ``sender``: only members and new members
    committing sign over the group context."""
    if sender.sender_type not in _SENDERS_WITH_CONTEXT:
        return None
    if group_context is None:
        raise UsageError(
            f"a {sender.sender_type.name.lower()} sender signs over the group context:"
            " pass group_context"
        )
    return group_context


def sign_framed_content(
    suite: CipherSuite,
    signature_private_key: bytes,
    wire_format: WireFormat,
    content: FramedContent,
    group_context: GroupContext | None = None,
    *,
    confirmation_tag: bytes | None = None,
) -> AuthenticatedContent:
    """Sign ``content`` for sending as ``wire_format`` (§6.1).

    ``group_context`` (the current epoch's) is required for ``member`` and ``new_member_commit``
    senders. A commit's ``confirmation_tag`` depends on this signature (through the confirmed
    transcript hash), so it is usually added afterwards with :func:`with_confirmation_tag`.
    """
    if wire_format not in (WireFormat.MLS_PUBLIC_MESSAGE, WireFormat.MLS_PRIVATE_MESSAGE):
        raise UsageError(
            f"framed content is sent as a public or private message, not {wire_format!r}"
        )
    if confirmation_tag is not None and content.content_type != ContentType.COMMIT:
        raise UsageError("only a commit carries a confirmation tag")
    if group_context is not None and (content.group_id, content.epoch) != (
        group_context.group_id,
        group_context.epoch,
    ):
        raise UsageError("the content's group id and epoch are not those of group_context")
    tbs = FramedContentTBS(wire_format, content, _tbs_context(content.sender, group_context))
    signature = suite.sign_with_label(
        signature_private_key, FRAMED_CONTENT_SIGNATURE_LABEL, encode(tbs)
    )
    return AuthenticatedContent(
        wire_format, content, FramedContentAuthData(signature, confirmation_tag)
    )


def with_confirmation_tag(authenticated: AuthenticatedContent, tag: bytes) -> AuthenticatedContent:
    """A copy of a signed commit with its ``confirmation_tag`` set (§6.1, §8.2)."""
    if authenticated.content.content_type != ContentType.COMMIT:
        raise UsageError("only a commit carries a confirmation tag")
    return replace(authenticated, auth=replace(authenticated.auth, confirmation_tag=tag))


def verify_framed_content(
    suite: CipherSuite,
    signature_public_key: bytes,
    authenticated: AuthenticatedContent,
    group_context: GroupContext | None = None,
) -> None:
    """Check the signature of ``authenticated`` under the sender's ``signature_public_key``.

    Raises :class:`ValidationError` (``framed_content.signature``, §6.1).
    """
    context = _tbs_context(authenticated.content.sender, group_context)
    if not _signature_verifies(suite, signature_public_key, authenticated, context):
        sender = authenticated.content.sender
        raise ValidationError(
            f"signature of {authenticated.content.content_type.name.lower()} content from"
            f" {_describe(sender)} does not verify under its signature key",
            check="framed_content.signature",
            section="6.1",
        )


def _signature_verifies(
    suite: CipherSuite,
    public_key: bytes,
    authenticated: AuthenticatedContent,
    context: GroupContext | None,
) -> bool:
    try:
        suite.verify_with_label(
            public_key,
            FRAMED_CONTENT_SIGNATURE_LABEL,
            authenticated.to_be_signed(context),
            authenticated.auth.signature,
        )
    except CryptoError:
        return False
    return True


def _describe(sender: Sender) -> str:
    if sender.sender_type == SenderType.MEMBER:
        return f"member leaf {sender.index}"
    if sender.sender_type == SenderType.EXTERNAL:
        return f"external sender {sender.index}"
    return f"a {sender.sender_type.name.lower()} sender"


# -- checks shared by both message kinds ------------------------------------------------------


def _check_group_and_epoch(group_id: bytes, epoch: int, group_context: GroupContext) -> None:
    if group_id != group_context.group_id:
        raise ValidationError(
            f"message for group {group_id.hex()} received in group {group_context.group_id.hex()}",
            check="message.group_id",
            section="6",
        )
    if epoch != group_context.epoch:
        raise ValidationError(
            f"message for epoch {epoch} checked with the keys of epoch {group_context.epoch}",
            check="message.epoch",
            section="12.4.2",
        )


def _sender_error(message: str, section: str = "6.1") -> ValidationError:
    return ValidationError(message, check="framed_content.sender", section=section)


def _check_sender_may_send(content: FramedContent) -> None:
    """The content types each kind of sender may send (§6.1, §12.1.8)."""
    sender_type = content.sender.sender_type
    body = content.body
    if sender_type == SenderType.MEMBER:
        return
    if sender_type == SenderType.EXTERNAL:
        if not isinstance(body, Proposal):
            raise _sender_error(f"an external sender may send only proposals, not {_kind(body)}")
        if body.proposal_type not in EXTERNAL_SENDER_PROPOSAL_TYPES:
            raise _sender_error(
                f"an external sender may not send a {body.proposal_type.name.lower()} proposal",
                section="12.1.8",
            )
    elif sender_type == SenderType.NEW_MEMBER_COMMIT:
        if not isinstance(body, Commit):
            raise _sender_error(
                f"a new_member_commit sender may send only a commit, not {_kind(body)}"
            )
    elif not (isinstance(body, Proposal) and isinstance(body.body, Add)):
        raise _sender_error(f"a new_member_proposal sender may send only an Add, not {_kind(body)}")


def _kind(body: ContentBody) -> str:
    if isinstance(body, Proposal):
        return f"a {body.proposal_type.name.lower()} proposal"
    return f"{content_type_of(body).name.lower()} content"


def _member_key(member_signature_key: SignatureKeyLookup, leaf_index: int) -> bytes:
    key = member_signature_key(leaf_index)
    if key is None:
        raise _sender_error(f"sender leaf {leaf_index} is blank or outside the tree")
    return key


def _sender_signature_key(
    content: FramedContent,
    group_context: GroupContext,
    member_signature_key: SignatureKeyLookup,
) -> bytes:
    """The key the sender signed with (§6.1); the content was already checked to be of a type
    this sender may send."""
    sender = content.sender
    body = content.body
    if sender.sender_type == SenderType.MEMBER:
        return _member_key(member_signature_key, sender.index)
    if sender.sender_type == SenderType.EXTERNAL:
        extension = find_extension(group_context.extensions, ExtensionType.EXTERNAL_SENDERS)
        if extension is None:
            raise _sender_error(
                "external sender, but the group has no external_senders extension", "12.1.8.1"
            )
        senders = decode_external_senders(extension.extension_data)
        if sender.index >= len(senders):
            raise _sender_error(
                f"external sender {sender.index} is not among the group's"
                f" {len(senders)} external senders",
                "12.1.8.1",
            )
        return senders[sender.index].signature_key
    if sender.sender_type == SenderType.NEW_MEMBER_COMMIT:
        assert isinstance(body, Commit)
        if body.path is None:
            raise _sender_error("an external commit must have an update path", "12.4.3.2")
        return body.path.leaf_node.signature_key
    assert isinstance(body, Proposal) and isinstance(body.body, Add)
    return body.body.key_package.leaf_node.signature_key


# -- PublicMessage (§6.2) ----------------------------------------------------------------------


def _tbm(authenticated: AuthenticatedContent, group_context: GroupContext) -> bytes:
    tbs = FramedContentTBS(
        authenticated.wire_format,
        authenticated.content,
        _tbs_context(authenticated.content.sender, group_context),
    )
    return encode(AuthenticatedContentTBM(tbs, authenticated.auth))


def protect_public_message(
    suite: CipherSuite,
    authenticated: AuthenticatedContent,
    *,
    group_context: GroupContext,
    membership_key: bytes | None = None,
) -> PublicMessage:
    """Encode signed content as a PublicMessage, with the membership tag for member senders.

    ``authenticated`` must have been signed for ``mls_public_message`` and, for a commit, carry
    its confirmation tag. Application data must be sent as a PrivateMessage (§6).
    """
    content = authenticated.content
    if authenticated.wire_format != WireFormat.MLS_PUBLIC_MESSAGE:
        raise UsageError(
            f"content signed for {authenticated.wire_format.name} cannot be sent as a"
            " PublicMessage: the signature covers the wire format"
        )
    if content.content_type == ContentType.APPLICATION:
        raise UsageError("application messages must be sent as PrivateMessage (RFC 9420 §6)")
    if content.content_type == ContentType.COMMIT and authenticated.auth.confirmation_tag is None:
        raise UsageError("a commit needs its confirmation tag before it is sent")
    if (content.group_id, content.epoch) != (group_context.group_id, group_context.epoch):
        raise UsageError("the content's group id and epoch are not those of group_context")
    tag = None
    if content.sender.sender_type == SenderType.MEMBER:
        if membership_key is None:
            raise UsageError("a member's PublicMessage needs the epoch's membership_key")
        tag = membership_tag(suite, membership_key, _tbm(authenticated, group_context))
    return PublicMessage(content, authenticated.auth, tag)


def unprotect_public_message(
    suite: CipherSuite,
    message: PublicMessage,
    *,
    group_context: GroupContext,
    membership_key: bytes,
    member_signature_key: SignatureKeyLookup,
) -> AuthenticatedContent:
    """Check a received PublicMessage against the current epoch and return its content.

    Checks, in order: group id and epoch; no application data (§6); the sender may send this
    content type (§6.1, §12.1.8); the membership tag of member senders (§6.2); the signature
    (§6.1). The confirmation tag of a commit is left to commit processing.
    """
    content = message.content
    _check_group_and_epoch(content.group_id, content.epoch, group_context)
    if content.content_type == ContentType.APPLICATION:
        raise ValidationError(
            f"application data from {_describe(content.sender)} sent as a PublicMessage;"
            " it must be encrypted",
            check="public_message.application",
            section="6",
        )
    _check_sender_may_send(content)
    authenticated = AuthenticatedContent(WireFormat.MLS_PUBLIC_MESSAGE, content, message.auth)
    if content.sender.sender_type == SenderType.MEMBER:
        expected = membership_tag(suite, membership_key, _tbm(authenticated, group_context))
        if message.membership_tag is None or not hmac.compare_digest(
            expected, message.membership_tag
        ):
            received = "none" if message.membership_tag is None else message.membership_tag.hex()
            raise ValidationError(
                f"membership_tag {received} of a message from {_describe(content.sender)} does"
                " not match the epoch's membership key",
                check="public_message.membership_tag",
                section="6.2",
            )
    signature_key = _sender_signature_key(content, group_context, member_signature_key)
    verify_framed_content(suite, signature_key, authenticated, group_context)
    return authenticated


# -- PrivateMessage (§6.3) ---------------------------------------------------------------------


def _ratchet_type(content_type: ContentType) -> RatchetType:
    if content_type == ContentType.APPLICATION:
        return RatchetType.APPLICATION
    return RatchetType.HANDSHAKE


def _guarded_nonce(nonce: bytes, reuse_guard: bytes) -> bytes:
    """The ratchet nonce with ``reuse_guard`` XORed into its first four bytes (§6.3.1)."""
    head = bytes(a ^ b for a, b in zip(nonce[:REUSE_GUARD_SIZE], reuse_guard, strict=True))
    return head + nonce[REUSE_GUARD_SIZE:]


def protect_private_message(
    suite: CipherSuite,
    authenticated: AuthenticatedContent,
    *,
    secret_tree: SecretTree,
    sender_data_secret: bytes,
    padding: PaddingPolicy = DEFAULT_PADDING,
) -> PrivateMessage:
    """Encrypt signed content from the own leaf of ``secret_tree`` as a PrivateMessage (§6.3).

    Uses up the next generation of the own leaf's handshake (proposals, commits) or
    application ratchet. ``padding`` chooses how many zero bytes follow the content.
    """
    content = authenticated.content
    sender = content.sender
    if authenticated.wire_format != WireFormat.MLS_PRIVATE_MESSAGE:
        raise UsageError(
            f"content signed for {authenticated.wire_format.name} cannot be sent as a"
            " PrivateMessage: the signature covers the wire format"
        )
    if sender.sender_type != SenderType.MEMBER:
        raise UsageError(f"only members send PrivateMessages, not {_describe(sender)} (§6.3.2)")
    if sender.index != secret_tree.own_leaf:
        raise UsageError(
            f"the sender is leaf {sender.index} but the secret tree belongs to leaf"
            f" {secret_tree.own_leaf}"
        )
    if content.content_type == ContentType.COMMIT and authenticated.auth.confirmation_tag is None:
        raise UsageError("a commit needs its confirmation tag before it is sent")
    writer = Writer()
    PrivateMessageContent(content.body, authenticated.auth).encode(writer)
    unpadded = writer.getvalue()
    padding_size = padding(len(unpadded))
    if padding_size < 0:
        raise UsageError(f"padding policy returned {padding_size} bytes of padding")
    plaintext = unpadded + bytes(padding_size)

    content_type = content.content_type
    ratchet_key = secret_tree.next_encryption_key(_ratchet_type(content_type))
    reuse_guard = suite.random_bytes(REUSE_GUARD_SIZE)
    content_aad = PrivateContentAAD(
        content.group_id, content.epoch, content_type, content.authenticated_data
    )
    ciphertext = suite.aead_seal(
        ratchet_key.key,
        _guarded_nonce(ratchet_key.nonce, reuse_guard),
        encode(content_aad),
        plaintext,
    )
    sender_data = SenderData(sender.index, ratchet_key.generation, reuse_guard)
    key, nonce = sender_data_key_and_nonce(suite, sender_data_secret, ciphertext)
    sender_data_aad = SenderDataAAD(content.group_id, content.epoch, content_type)
    encrypted_sender_data = suite.aead_seal(
        key, nonce, encode(sender_data_aad), encode(sender_data)
    )
    return PrivateMessage(
        content.group_id,
        content.epoch,
        content_type,
        content.authenticated_data,
        encrypted_sender_data,
        ciphertext,
    )


def _open_sender_data(
    suite: CipherSuite, message: PrivateMessage, sender_data_secret: bytes
) -> SenderData:
    key, nonce = sender_data_key_and_nonce(suite, sender_data_secret, message.ciphertext)
    aad = SenderDataAAD(message.group_id, message.epoch, message.content_type)
    try:
        plaintext = suite.aead_open(key, nonce, encode(aad), message.encrypted_sender_data)
    except CryptoError as exc:
        raise ProtocolError(
            f"encrypted_sender_data does not decrypt: {exc}",
            check="private_message.sender_data",
            section="6.3.2",
        ) from exc
    return decode_decrypted(
        SenderData,
        plaintext,
        "decrypted SenderData is malformed",
        check="private_message.sender_data",
        section="6.3.2",
    )


def _decode_private_content(plaintext: bytes, content_type: ContentType) -> PrivateMessageContent:
    """Decode PrivateMessageContent, telling a malformed body from non-zero padding (§6.3.1)."""
    reader = Reader(plaintext)
    body: ContentBody
    try:
        if content_type == ContentType.APPLICATION:
            body = reader.opaque("PrivateMessageContent.application_data")
        elif content_type == ContentType.PROPOSAL:
            body = Proposal.decode(reader)
        else:
            body = Commit.decode(reader)
        auth = FramedContentAuthData.decode(reader, content_type)
    except DecodeError as exc:
        raise ProtocolError(
            f"decrypted PrivateMessageContent is malformed: {exc}",
            check="private_message.content",
            section="6.3.1",
        ) from exc
    start = reader.offset
    padding = reader.fixed(reader.remaining, "PrivateMessageContent.padding")
    if padding.count(0) != len(padding):
        first = next(i for i, octet in enumerate(padding) if octet)
        raise ProtocolError(
            f"non-zero byte {padding[first]:#04x} in the padding of a PrivateMessage at"
            f" offset {start + first} of its plaintext",
            check="private_message.padding",
            section="6.3.1",
        )
    return PrivateMessageContent(body, auth, len(padding))


def unprotect_private_message(
    suite: CipherSuite,
    message: PrivateMessage,
    *,
    group_context: GroupContext,
    secret_tree: SecretTree,
    sender_data_secret: bytes,
    member_signature_key: SignatureKeyLookup,
) -> AuthenticatedContent:
    """Decrypt and check a received PrivateMessage of the current epoch; return its content.

    Checks, in order: group id and epoch; the sender data decrypts and names a leaf inside the
    tree that is not blank (§6.3.2); the secret tree gives the key of that generation (its
    out-of-order window, no reuse, §9.2); the content decrypts (§6.3.1), decodes, and its
    padding is all zero; the signature verifies (§6.1). Only then is the ratchet key consumed.
    """
    _check_group_and_epoch(message.group_id, message.epoch, group_context)
    sender_data = _open_sender_data(suite, message, sender_data_secret)
    leaf = sender_data.leaf_index
    if leaf >= secret_tree.n_leaves:
        raise ValidationError(
            f"SenderData names leaf {leaf}, outside the tree of {secret_tree.n_leaves} leaves",
            check="private_message.sender_leaf_index",
            section="6.3.2",
        )
    signature_key = member_signature_key(leaf)
    if signature_key is None:
        raise ValidationError(
            f"SenderData names leaf {leaf}, which is blank",
            check="private_message.sender_leaf_index",
            section="6.3.2",
        )
    content_type = message.content_type
    aad = encode(
        PrivateContentAAD(message.group_id, message.epoch, content_type, message.authenticated_data)
    )
    ratchet_type = _ratchet_type(content_type)
    # Leaving the block by an exception keeps the ratchet key for the genuine message.
    with secret_tree.decryption_key(leaf, ratchet_type, sender_data.generation) as ratchet_key:
        nonce = _guarded_nonce(ratchet_key.nonce, sender_data.reuse_guard)
        try:
            plaintext = suite.aead_open(ratchet_key.key, nonce, aad, message.ciphertext)
        except CryptoError as exc:
            raise ProtocolError(
                f"ciphertext from leaf {leaf}, {ratchet_type.value} generation"
                f" {sender_data.generation}, does not decrypt: {exc}",
                check="private_message.aead",
                section="6.3.1",
            ) from exc
        private_content = _decode_private_content(plaintext, content_type)
        content = FramedContent(
            message.group_id,
            message.epoch,
            Sender.member(leaf),
            message.authenticated_data,
            private_content.body,
        )
        authenticated = AuthenticatedContent(
            WireFormat.MLS_PRIVATE_MESSAGE, content, private_content.auth
        )
        verify_framed_content(suite, signature_key, authenticated, group_context)
    return authenticated
