"""The policies of a group member (RFC 9420 leaves them to the application).

A :class:`GroupConfig` is given to :class:`~veilpost.mls.group.Group` when the group is created,
joined or loaded; it is not part of the saved group state (it holds callables), so an
application passes the same one every time. Every field has a default that suits Veilpost:

- handshake messages (proposals and commits) travel as PrivateMessage, as §6 recommends; the
  relay orders commits by the cleartext header (group id, epoch, content type), which a
  PrivateMessage exposes too. External proposals and external commits are always
  PublicMessage: their senders have no keys to encrypt with (§6, §12.1.8, §12.4.3.2);
- the secret trees of the last ``max_past_epochs`` (3) epochs are kept, so application messages
  sent just before a commit still decrypt after it (§15.3 "Delayed and Reordered Application
  Messages", §14). Each one costs forward secrecy for that long: 0 keeps none;
- resumption PSKs (§8.6) of the last ``max_resumption_psks`` (5) epochs are kept, the current
  one included, so a commit may inject a recent epoch's ``resumption_psk``;
- time: the library has no clock (sans-I/O). Pass ``clock`` (Unix seconds) to check that key
  packages are within their ``lifetime`` when they are added (§7.3: recommended for received
  ones); without it only the lifetime's span (``lifetime_policy.max_lifetime``) is checked.
  Leaves already in a tree a member joins are never checked against the clock: a long-lived
  group's leaves outlive their key packages;
- the Authentication Service (§5.3.1): ``credential_validator`` is called for every credential
  that enters the group; ``None`` accepts any credential (the client layer checks identities);
- who may bring a client in (§12.1.8, §12.4.3.2, §12.4: "application policy"): only members.
  A ``new_member_proposal`` signs no GroupContext, so anyone who has seen a message header
  (the relay, for one) can make one; it is refused unless ``accept_new_member_proposals``.
  Even then, proposals from non-members (``new_member_proposal`` and ``external`` senders)
  are never committed by :meth:`~veilpost.mls.group.Group.commit` on its own: the
  application approves each one by passing its reference in ``include_proposals``.
  External Commits are refused unless ``accept_external_commits``, and GroupInfo is
  published without ``external_pub`` unless asked for: whoever holds a GroupInfo with it
  (the relay carries them) could join;
- an external Commit may remove only an old leaf of the joiner itself (§12.2 "resync"): with
  a ``credential_validator`` the validator decides (it gets the removed leaf's credential as
  ``predecessor``), without one the removed leaf's credential must equal the joiner's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from veilpost.mls.errors import UsageError
from veilpost.mls.framing import WireFormat
from veilpost.mls.message_protection import DEFAULT_PADDING, PaddingPolicy
from veilpost.mls.secret_tree import RatchetWindow
from veilpost.mls.validation import DEFAULT_LIFETIME_POLICY, CredentialValidator, LifetimePolicy

__all__ = ["ExternalPskStore", "GroupConfig"]

ExternalPskStore = Mapping[bytes, bytes] | Callable[[bytes], bytes | None]
"""External PSKs (§8.4) by ``psk_id``: a mapping, or a function returning ``None`` when absent."""


@dataclass(frozen=True)
class GroupConfig:
    """A member's policies; see the module documentation for the defaults and why."""

    handshake_wire_format: WireFormat = WireFormat.MLS_PRIVATE_MESSAGE
    """How this member sends its own proposals and commits (application data is always
    PrivateMessage). Incoming handshake messages are accepted in either form."""

    max_past_epochs: int = 3
    """How many earlier epochs' secret trees are kept to decrypt late application messages."""

    max_resumption_psks: int = 5
    """How many epochs' ``resumption_psk`` values are kept (the current one included)."""

    ratchet_tree_in_welcome: bool = True
    """Whether the GroupInfo in a Welcome carries the ``ratchet_tree`` extension (§12.4.3.3);
    without it new members need the tree out of band."""

    padding: PaddingPolicy = DEFAULT_PADDING
    """Zero padding of PrivateMessage plaintexts (§6.3.1, §15.1)."""

    ratchet_window: RatchetWindow = field(default_factory=RatchetWindow)
    """Out-of-order tolerance of the sender ratchets (§9.2, §15.3)."""

    clock: Callable[[], int] | None = None
    """Current Unix time for key package lifetimes; ``None`` skips the time-range check."""

    lifetime_policy: LifetimePolicy = DEFAULT_LIFETIME_POLICY
    """Longest accepted key package lifetime and the clock skew (§7.2)."""

    credential_validator: CredentialValidator | None = None
    """The application's Authentication Service (§5.3.1); ``None`` accepts every credential."""

    external_psks: ExternalPskStore = field(default_factory=dict)
    """External PSKs by ``psk_id`` (§8.4), for PreSharedKey proposals and Welcomes."""

    accept_external_commits: bool = False
    """Whether external commits (§12.4.3.2) from non-members are processed (refused by
    default: anyone holding a GroupInfo with ``external_pub`` could otherwise join)."""

    accept_new_member_proposals: bool = False
    """Whether Add proposals sent by the joiner itself (``new_member_proposal``, §12.1.8) are
    cached (refused by default: they are bound to no GroupContext). Cached ones are still
    committed only when the application names them in ``Group.commit(include_proposals=...)``."""

    def __post_init__(self) -> None:
        if self.handshake_wire_format not in (
            WireFormat.MLS_PUBLIC_MESSAGE,
            WireFormat.MLS_PRIVATE_MESSAGE,
        ):
            raise UsageError(
                "handshake_wire_format must be MLS_PUBLIC_MESSAGE or MLS_PRIVATE_MESSAGE,"
                f" not {self.handshake_wire_format!r}"
            )
        if self.max_past_epochs < 0:
            raise UsageError(f"max_past_epochs must not be negative, got {self.max_past_epochs}")
        if self.max_resumption_psks < 1:
            raise UsageError(
                f"max_resumption_psks must be at least 1, got {self.max_resumption_psks}"
            )

    def now(self) -> int | None:
        """The clock's current time, or ``None`` without a clock."""
        return None if self.clock is None else self.clock()

    def external_psk(self, psk_id: bytes) -> bytes | None:
        """The value of external PSK ``psk_id``, or ``None``."""
        store = self.external_psks
        if callable(store):
            return store(psk_id)
        return store.get(psk_id)
