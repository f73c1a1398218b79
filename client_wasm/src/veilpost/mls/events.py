"""What :meth:`Group.process <veilpost.mls.group.Group.process>` returns: one event per message.

As in h11, bytes go in and events come out; an event is plain data the application acts on:

- :class:`ApplicationMessage` — a member's decrypted application data;
- :class:`ProposalReceived` — a valid proposal, now cached for a later Commit (§12.1, §12.3);
- :class:`StagedCommit` — a valid Commit, with the next epoch's state ready but not yet in
  force: apply it with :meth:`~veilpost.mls.group.Group.merge_staged_commit` (or drop it).
  For the member's own pending Commit echoed back by the delivery service the staged commit
  is merged already (``own`` is true);
- :class:`OwnMessage` — a message this member sent itself, echoed back (its key is spent, and
  the sender already knows what it said).

:class:`CommitOutput` is what :meth:`~veilpost.mls.group.Group.commit` returns: the messages to
send. :class:`Member` describes one leaf of the group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from veilpost.mls.credential import Credential
from veilpost.mls.extensions import Extension
from veilpost.mls.framing import ContentType, Sender
from veilpost.mls.leaf_node import LeafNode
from veilpost.mls.proposals import Proposal, ReInit
from veilpost.mls.psk import PreSharedKeyID

if TYPE_CHECKING:
    from veilpost.mls.group_state import EpochState

__all__ = [
    "ApplicationMessage",
    "CommitOutput",
    "Event",
    "Member",
    "OwnMessage",
    "ProposalReceived",
    "StagedCommit",
]


@dataclass(frozen=True)
class Member:
    """A member of the group: its leaf index, credential and signature key."""

    leaf_index: int
    credential: Credential
    signature_key: bytes

    @classmethod
    def of(cls, leaf_index: int, leaf_node: LeafNode) -> Member:
        return cls(leaf_index, leaf_node.credential, leaf_node.signature_key)


@dataclass(frozen=True)
class ApplicationMessage:
    """Application data from the member at leaf ``sender`` (§15), in ``epoch``."""

    sender: int
    credential: Credential
    data: bytes
    authenticated_data: bytes
    epoch: int


@dataclass(frozen=True)
class ProposalReceived:
    """A proposal from ``sender``, checked and cached under ``ref`` (its ProposalRef, §5.2)
    for a Commit of this epoch."""

    proposal: Proposal
    sender: Sender
    ref: bytes
    epoch: int


@dataclass(frozen=True)
class OwnMessage:
    """An echo of a message this member sent (``ref`` is set for proposals)."""

    content_type: ContentType
    epoch: int
    ref: bytes | None = None


@dataclass(frozen=True, eq=False)
class StagedCommit:
    """A verified Commit moving the group from ``epoch - 1`` to ``epoch`` (§12.4.2).

    ``committer`` is the sender; ``committer_leaf`` its leaf in the new epoch (for an
    external Commit, the joiner's new leaf). ``added``, ``removed`` and ``updated`` list the
    members each kind of proposal changed (``updated``: Update proposals; the committer's own
    leaf changes whenever ``has_path``). ``extensions`` is the new GroupContext extension list
    when a GroupContextExtensions proposal changed it. ``reinit`` is set when the Commit
    covered a ReInit: after merging, the group sends nothing more (§12.4.2, §11.2).
    ``self_removed``: the Commit removes this member. ``own``: this member made the Commit.
    """

    group_id: bytes
    epoch: int
    committer: Sender
    committer_leaf: int
    added: tuple[Member, ...] = ()
    removed: tuple[Member, ...] = ()
    updated: tuple[Member, ...] = ()
    psks: tuple[PreSharedKeyID, ...] = ()
    extensions: tuple[Extension, ...] | None = None
    reinit: ReInit | None = None
    has_path: bool = False
    external: bool = False
    self_removed: bool = False
    own: bool = False
    state: EpochState | None = field(default=None, repr=False)
    """The new epoch's state (``None`` when ``self_removed``); internal to the group."""


@dataclass(frozen=True)
class CommitOutput:
    """What a new Commit gives the committer to send (§12.4.1).

    ``commit`` goes to the group; ``welcome`` (when members were added) to the new members
    only once the delivery service accepted the Commit (§14); ``group_info`` is the new
    epoch's signed GroupInfo (with ``external_pub`` when the committer's config accepts
    external commits), for external joins.
    """

    commit: bytes
    welcome: bytes | None
    group_info: bytes
    staged: StagedCommit


Event = ApplicationMessage | ProposalReceived | StagedCommit | OwnMessage
"""Everything :meth:`~veilpost.mls.group.Group.process` returns."""
