"""Group metadata and the permission policy that every member enforces on every Commit.

A conversation's metadata — kind (DM or group), name, description, roles and policy — lives in
a GroupContext extension of private-use type :data:`METADATA_EXTENSION` (RFC 9420 §13.3). The
GroupContext is never sent in the clear (Welcomes and PrivateMessage commits encrypt it), so the
relay learns none of it; changing it takes a GroupContextExtensions proposal, i.e. a Commit.

Roles: a **super admin** may do everything, including changing roles and the policy; an
**admin** what the policy grants admins; every member what it grants everyone. The creator of a
group is its first super admin. :func:`check_commit` is the rule every client applies to a
staged Commit before merging it, and to its own Commit before sending it:

- adding an installation of an inbox that is already a member (a new device) is always
  allowed; adding a new inbox needs ``policy.add_member``;
- removing installations of one's own inbox, installations that their inbox's identity record
  no longer lists (revoked devices), or an inbox that asked to leave (one of its installations
  proposed removing its inbox's installations this epoch) is always allowed; removing anyone
  else needs ``policy.remove_member``, and removing a super admin needs a super admin;
- changing the name or description needs ``policy.update_metadata``; changing roles or the
  policy needs a super admin; the kind and a DM's pair never change;
- ReInit and PSK proposals are refused (Veilpost uses neither); changing a GroupContext
  extension other than the metadata needs a super admin;
- a DM never gains or loses an inbox: only devices of its two inboxes (and nobody removes the
  other inbox's listed devices).

Honest clients commit other members' proposals only when they are departures (a member's own
removal); a committer answers for every proposal its Commit covers.

Wire form (TLS presentation language)::

    struct {
        uint8 format = 1; uint8 kind;            // 1 = dm, 2 = group
        opaque name<V>; opaque description<V>;   // UTF-8
        opaque super_admins<V><V>; opaque admins<V><V>;   // inbox ids, ASCII
        uint8 add_member; uint8 remove_member; uint8 update_metadata;   // Permission
        opaque dm_inboxes<V><V>;                 // the DM's two inbox ids, sorted; else empty
    } GroupMetadata;
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from veilpost.codec import DecodeError, Reader, Writer
from veilpost.mls.events import Member, StagedCommit
from veilpost.mls.extensions import Extension, find_extension
from veilpost.protocol import is_installation_id

from .errors import PermissionDenied
from .identity import inbox_of_credential

__all__ = [
    "METADATA_EXTENSION",
    "ConversationKind",
    "GroupMetadata",
    "Permission",
    "PermissionPolicy",
    "Role",
    "check_commit",
    "metadata_of",
]

METADATA_EXTENSION = 0xF7E1
"""The GroupContext extension type of Veilpost group metadata (private use, RFC 9420 §17.3)."""

MAX_NAME_BYTES = 256
MAX_DESCRIPTION_BYTES = 4096


class ConversationKind(enum.IntEnum):
    DM = 1
    GROUP = 2


class Permission(enum.IntEnum):
    """Who may do something."""

    EVERYONE = 0
    ADMIN = 1
    SUPER_ADMIN = 2


class Role(enum.IntEnum):
    MEMBER = 0
    ADMIN = 1
    SUPER_ADMIN = 2


@dataclass(frozen=True)
class PermissionPolicy:
    """What each role may do; the default lets everyone add members and rename, and only
    admins remove members."""

    add_member: Permission = Permission.EVERYONE
    remove_member: Permission = Permission.ADMIN
    update_metadata: Permission = Permission.EVERYONE

    def allows(self, permission: Permission, role: Role) -> bool:
        return int(role) >= int(permission)


@dataclass(frozen=True)
class GroupMetadata:
    """A conversation's metadata, as every member sees it."""

    kind: ConversationKind
    name: str = ""
    description: str = ""
    super_admins: tuple[str, ...] = ()
    admins: tuple[str, ...] = ()
    policy: PermissionPolicy = field(default_factory=PermissionPolicy)
    dm_inboxes: tuple[str, ...] = ()

    @classmethod
    def group(cls, creator: str, *, name: str = "", description: str = "") -> GroupMetadata:
        return cls(ConversationKind.GROUP, name, description, super_admins=(creator,))

    @classmethod
    def dm(cls, a: str, b: str) -> GroupMetadata:
        return cls(ConversationKind.DM, dm_inboxes=tuple(sorted((a, b))))

    def role_of(self, inbox: str) -> Role:
        if inbox in self.super_admins:
            return Role.SUPER_ADMIN
        if inbox in self.admins:
            return Role.ADMIN
        return Role.MEMBER

    def with_role(self, inbox: str, role: Role) -> GroupMetadata:
        supers = tuple(i for i in self.super_admins if i != inbox)
        admins = tuple(i for i in self.admins if i != inbox)
        if role == Role.SUPER_ADMIN:
            supers += (inbox,)
        elif role == Role.ADMIN:
            admins += (inbox,)
        return replace(self, super_admins=supers, admins=admins)

    def to_extension(self) -> Extension:
        writer = Writer()
        writer.uint8(1)
        writer.uint8(int(self.kind))
        writer.opaque(self.name.encode("utf-8"))
        writer.opaque(self.description.encode("utf-8"))
        writer.vector([i.encode("ascii") for i in self.super_admins], Writer.opaque)
        writer.vector([i.encode("ascii") for i in self.admins], Writer.opaque)
        writer.uint8(int(self.policy.add_member))
        writer.uint8(int(self.policy.remove_member))
        writer.uint8(int(self.policy.update_metadata))
        writer.vector([i.encode("ascii") for i in self.dm_inboxes], Writer.opaque)
        return Extension(METADATA_EXTENSION, writer.getvalue())

    @classmethod
    def from_extension(cls, extension: Extension) -> GroupMetadata:
        """Decode strictly; :class:`~veilpost.codec.DecodeError` for anything malformed."""
        reader = Reader(extension.extension_data)
        if reader.uint8("GroupMetadata.format") != 1:
            raise DecodeError("unsupported group metadata format")
        try:
            kind = ConversationKind(reader.uint8("GroupMetadata.kind"))
            name = reader.opaque("GroupMetadata.name").decode("utf-8")
            description = reader.opaque("GroupMetadata.description").decode("utf-8")

            def inboxes(what: str) -> tuple[str, ...]:
                return tuple(b.decode("ascii") for b in reader.vector(lambda r: r.opaque(), what))

            supers = inboxes("GroupMetadata.super_admins")
            admins = inboxes("GroupMetadata.admins")
            policy = PermissionPolicy(
                Permission(reader.uint8("add_member")),
                Permission(reader.uint8("remove_member")),
                Permission(reader.uint8("update_metadata")),
            )
            dm = inboxes("GroupMetadata.dm_inboxes")
            for inbox in (*supers, *admins, *dm):
                if not is_installation_id(inbox):
                    raise DecodeError(f"{inbox[:40]!r} is not an inbox id")
            if list(dm) != sorted(set(dm)):
                raise DecodeError("a DM's inboxes are distinct and sorted")
        except (ValueError, UnicodeDecodeError) as exc:
            if isinstance(exc, DecodeError):
                raise
            raise DecodeError(f"invalid group metadata: {exc}") from None
        reader.finish("GroupMetadata")
        if len(name.encode()) > MAX_NAME_BYTES or len(description.encode()) > MAX_DESCRIPTION_BYTES:
            raise DecodeError("group name or description too long")
        if (kind == ConversationKind.DM) != (len(dm) == 2):
            raise DecodeError("a DM names exactly two inboxes, a group none")
        return cls(kind, name, description, supers, admins, policy, dm)


def metadata_of(extensions: Iterable[Extension]) -> GroupMetadata | None:
    """The metadata among GroupContext extensions, or ``None`` (not a Veilpost group)."""
    extension = find_extension(list(extensions), METADATA_EXTENSION)
    return None if extension is None else GroupMetadata.from_extension(extension)


def _deny(check: str, message: str) -> PermissionDenied:
    error = PermissionDenied(f"{message} [{check}]")
    error.check = check  # type: ignore[attr-defined]
    return error


def check_commit(
    staged: StagedCommit,
    *,
    members: Mapping[int, Member],
    metadata: GroupMetadata,
    leaving: Iterable[str] = (),
    is_listed: Callable[[str, bytes], bool] = lambda inbox, key: True,
    extensions: Iterable[Extension] | None = None,
) -> GroupMetadata:
    """Check a staged Commit against the group's policy; return the new metadata.

    ``members`` are the members before the Commit, ``metadata`` the metadata before it,
    ``leaving`` the inboxes that proposed their own removal this epoch, and ``is_listed(inbox,
    key)`` whether the inbox's identity record still lists an installation key, and
    ``extensions`` the GroupContext extensions before the Commit (when given, changes to any
    but the metadata need a super admin). Raises
    :class:`~veilpost.client.errors.PermissionDenied` naming the broken rule.
    """
    if staged.external:
        raise _deny("policy.external", "external commits are not accepted")
    if staged.reinit is not None:
        raise _deny("policy.reinit", "Veilpost groups are not reinitialized (ReInit refused)")
    if staged.psks:
        raise _deny("policy.psk", "Veilpost groups use no pre-shared keys (PSK refused)")
    committer_member = members.get(staged.committer_leaf) if not staged.external else None
    if committer_member is None:
        raise _deny("policy.committer", "the committer is not a member")
    committer = inbox_of_credential(committer_member.credential)
    role = metadata.role_of(committer)
    present = {inbox_of_credential(m.credential) for m in members.values()}
    new_inboxes = {inbox_of_credential(m.credential) for m in staged.added} - present
    dm = metadata.kind == ConversationKind.DM
    if new_inboxes:
        if dm and not new_inboxes <= set(metadata.dm_inboxes):
            raise _deny("policy.dm_members", "a DM only ever holds its two inboxes")
        if not dm and not metadata.policy.allows(metadata.policy.add_member, role):
            raise _deny(
                "policy.add_member",
                f"inbox {committer} ({role.name.lower()}) may not add members",
            )
    leaving_set = set(leaving)
    for removed in staged.removed:
        inbox = inbox_of_credential(removed.credential)
        if inbox == committer or inbox in leaving_set:
            continue
        if not is_listed(inbox, removed.signature_key):
            continue  # a revoked device
        if dm:
            raise _deny("policy.dm_members", "nobody removes the other inbox's devices in a DM")
        needed = (
            Permission.SUPER_ADMIN
            if metadata.role_of(inbox) == Role.SUPER_ADMIN
            else metadata.policy.remove_member
        )
        if not metadata.policy.allows(needed, role):
            raise _deny(
                "policy.remove_member",
                f"inbox {committer} ({role.name.lower()}) may not remove inbox {inbox}",
            )
    if dm:
        removed_leaves = {m.leaf_index for m in staged.removed}
        after = {
            inbox_of_credential(m.credential)
            for leaf, m in members.items()
            if leaf not in removed_leaves
        } | {inbox_of_credential(m.credential) for m in staged.added}
        if after != set(metadata.dm_inboxes):
            raise _deny("policy.dm_members", "a DM always holds exactly its two inboxes")
    if staged.extensions is None:
        return metadata
    if extensions is not None:

        def others(items: Iterable[Extension]) -> list[Extension]:
            return [e for e in items if e.extension_type != METADATA_EXTENSION]

        if others(staged.extensions) != others(extensions) and role != Role.SUPER_ADMIN:
            raise _deny(
                "policy.extensions",
                "only a super admin changes the group's extensions other than its metadata",
            )
    try:
        new = metadata_of(staged.extensions)
    except DecodeError as exc:
        raise _deny(
            "policy.metadata_invalid", f"the new group metadata is malformed: {exc}"
        ) from None
    if new is None:
        raise _deny("policy.metadata_removed", "a commit may not drop the group metadata")
    if new.kind != metadata.kind or new.dm_inboxes != metadata.dm_inboxes:
        raise _deny("policy.kind", "a conversation's kind and DM pair never change")
    if (new.super_admins, new.admins, new.policy) != (
        metadata.super_admins,
        metadata.admins,
        metadata.policy,
    ):
        if role != Role.SUPER_ADMIN:
            raise _deny("policy.roles", "only a super admin changes roles or the policy")
        if not new.super_admins:
            raise _deny("policy.roles", "a group keeps at least one super admin")
    if (new.name, new.description) != (metadata.name, metadata.description) and not (
        metadata.policy.allows(metadata.policy.update_metadata, role)
    ):
        raise _deny("policy.update_metadata", f"inbox {committer} may not rename the group")
    return new
