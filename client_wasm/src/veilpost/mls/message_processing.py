"""Processing a received message (RFC 9420 §6, §12.1, §12.4.2, §15): which epoch's keys open
it, and what event it becomes.

A PublicMessage or PrivateMessage names its group and epoch in the clear. A message of the
current epoch is unprotected with that epoch's keys (membership tag or AEAD, then the
signature, :mod:`veilpost.mls.message_protection`) and becomes:

- application data: an :class:`~veilpost.mls.events.ApplicationMessage`;
- a proposal: checked on its own (§12.1, :func:`~veilpost.mls.proposal_list.check_proposal`)
  and cached under its ProposalRef (§12.3): a :class:`~veilpost.mls.events.ProposalReceived`;
- a Commit: staged (:func:`~veilpost.mls.commit_processing.stage_commit`).

A message of an earlier epoch is read only if it is application data and the epoch is among
those kept (§15.3); any other epoch is refused (``message.epoch``). A member removed from the
group reads only late application data of its last epochs. The caller (the group) recognises
this member's own messages and its pending Commit before anything here runs.
"""

from __future__ import annotations

from veilpost.codec import encode
from veilpost.mls.commit_processing import leaf_policy, member_signature_key, stage_commit
from veilpost.mls.errors import UsageError, ValidationError
from veilpost.mls.events import ApplicationMessage, Event, ProposalReceived
from veilpost.mls.framing import (
    AuthenticatedContent,
    ContentType,
    PrivateMessage,
    PublicMessage,
    SenderType,
)
from veilpost.mls.group_config import GroupConfig
from veilpost.mls.group_state import CachedProposal, GroupState
from veilpost.mls.message_protection import unprotect_private_message, unprotect_public_message
from veilpost.mls.proposal_list import check_proposal
from veilpost.mls.proposals import Proposal
from veilpost.mls.ratchet_tree import RatchetTree

__all__ = ["process_message"]


def process_message(
    state: GroupState, config: GroupConfig, body: PublicMessage | PrivateMessage
) -> Event:
    """The event of a received message of this group; see the module documentation."""
    current = state.current
    if isinstance(body, PublicMessage):
        group_id, epoch = body.content.group_id, body.content.epoch
    else:
        group_id, epoch = body.group_id, body.epoch
    if group_id != current.context.group_id:
        raise ValidationError(
            f"message for group {group_id.hex()[:32]}, not this group"
            f" {current.context.group_id.hex()[:32]}",
            check="message.group_id",
            section="6",
        )
    if state.removed or epoch != current.epoch:
        return _process_past(state, body, epoch)
    authenticated = _unprotect(state, body)
    content_body = authenticated.content.body
    if isinstance(content_body, bytes):
        return _application(authenticated, current.tree)
    if state.reinit is not None:
        raise ValidationError(
            "a handshake message after a Commit that covered a ReInit",
            check="group.reinit_pending",
            section="12.4.2",
        )
    if isinstance(content_body, Proposal):
        return _receive_proposal(state, config, authenticated)
    return stage_commit(state, config, authenticated)


def _unprotect(state: GroupState, body: PublicMessage | PrivateMessage) -> AuthenticatedContent:
    current = state.current
    tree = current.tree

    def lookup(leaf_index: int) -> bytes | None:
        return member_signature_key(tree, leaf_index)

    if isinstance(body, PublicMessage):
        return unprotect_public_message(
            state.suite,
            body,
            group_context=current.context,
            membership_key=current.secrets.membership_key,
            member_signature_key=lookup,
        )
    return unprotect_private_message(
        state.suite,
        body,
        group_context=current.context,
        secret_tree=current.secret_tree,
        sender_data_secret=current.secrets.sender_data_secret,
        member_signature_key=lookup,
    )


def _process_past(state: GroupState, body: PublicMessage | PrivateMessage, epoch: int) -> Event:
    """A message of another epoch: late application data of a kept epoch, or an error."""
    is_application = (
        isinstance(body, PrivateMessage) and body.content_type == ContentType.APPLICATION
    )
    past = next((p for p in state.past_epochs if p.context.epoch == epoch), None)
    if not is_application or past is None:
        if state.removed:
            raise UsageError(
                f"this member was removed from the group; it cannot read a message of epoch {epoch}"
            )
        kept = [p.context.epoch for p in state.past_epochs]
        kind = "application" if is_application else "handshake"
        raise ValidationError(
            f"{kind} message for epoch {epoch}, but the group is at epoch"
            f" {state.current.epoch}" + (f" and keeps epochs {kept}" if is_application else ""),
            check="message.epoch",
            section="15.3" if is_application else "12.4.2",
        )
    assert isinstance(body, PrivateMessage)
    tree = past.tree
    authenticated = unprotect_private_message(
        state.suite,
        body,
        group_context=past.context,
        secret_tree=past.secret_tree,
        sender_data_secret=past.sender_data_secret,
        member_signature_key=lambda leaf: member_signature_key(tree, leaf),
    )
    return _application(authenticated, tree)


def _application(authenticated: AuthenticatedContent, tree: RatchetTree) -> ApplicationMessage:
    content = authenticated.content
    assert isinstance(content.body, bytes)
    leaf = tree.leaf(content.sender.index)
    assert leaf is not None  # unprotecting checked the sender's leaf
    return ApplicationMessage(
        sender=content.sender.index,
        credential=leaf.credential,
        data=content.body,
        authenticated_data=content.authenticated_data,
        epoch=content.epoch,
    )


def _receive_proposal(
    state: GroupState, config: GroupConfig, authenticated: AuthenticatedContent
) -> ProposalReceived:
    content = authenticated.content
    proposal = content.body
    assert isinstance(proposal, Proposal)
    sender = content.sender
    if (
        sender.sender_type == SenderType.NEW_MEMBER_PROPOSAL
        and not config.accept_new_member_proposals
    ):
        raise ValidationError(
            "an Add proposal from the joiner itself, and this member's policy refuses them",
            check="policy.new_member_proposal",
            section="12.1.8",
        )
    current = state.current
    check_proposal(
        state.suite, current.context, current.tree, proposal, sender, leaf_policy(config)
    )
    ref = state.suite.make_proposal_ref(encode(authenticated))
    state.proposals[ref] = CachedProposal(ref, authenticated)
    return ProposalReceived(proposal, sender, ref, content.epoch)
