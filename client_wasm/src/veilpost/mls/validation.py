"""Leaf node validation (RFC 9420 §7.3) and key package validation (§10.1).

Theory of operation
-------------------
A :class:`~veilpost.mls.leaf_node.LeafNode` is checked every time it is about to change the
group: in a KeyPackage before an Add, in an Update proposal, in a Commit's UpdatePath, and in
a ratchet tree a joiner receives. The rules are the same each time; what changes is the
context, and every piece of context is an explicit argument here, so that the tree and the
group state stay with their owners:

- ``group_context`` — the group's version, cipher suite, group id (bound into the signature
  of ``update`` and ``commit`` leaves) and extensions (``required_capabilities``, §11.1; and
  every GroupContext extension must be supported, §13.4). ``None`` validates a key package
  on its own, e.g. when a client publishes or a directory receives it.
- ``members`` — a :class:`GroupMembers` view of the group's other leaves, for the rules that
  look across members: unique keys and credential types everybody supports.
- ``leaf_index`` — the slot the leaf takes. The slot's current occupant is the leaf being
  replaced, so it is left out of the cross-member rules.
- ``now`` — Unix seconds, for the ``lifetime`` rule (sans-I/O: no clock here). ``None`` skips
  the time-range check, which the RFC makes mandatory only for leaves the client itself sends.
- ``credential_validator`` — the application's Authentication Service (§5.3.1).

Each broken rule raises :class:`~veilpost.mls.errors.ValidationError` whose ``check`` is a
stable name (``leaf_node.*`` or ``key_package.*``) and whose ``section`` is the RFC section
that states the rule; the message names the value that failed. Misuse of the API (a missing
group context for an ``update`` leaf, a suite that is not the group's) is a
:class:`~veilpost.mls.errors.UsageError`.

GREASE (§13.5): unknown values in ``capabilities`` and unknown extensions are never an error
by themselves. Nothing here recognises the GREASE code points: they pass through the same
logic as any other value a newer client might send, as the RFC requires.

Where the RFC leaves room, these choices hold:

- §7.3 asks for *each* leaf extension in ``capabilities.extensions``, §7.2 only for
  non-default ones (which must not be listed): default extensions are exempt.
- A ``capabilities`` that lists default extension or proposal types (§7.2: MUST NOT) is
  accepted; §7.3 does not make it a validation step, and rejecting it gains nothing.
- ``KeyPackage.extensions`` are not checked against the leaf's capabilities: §10 asks the
  creator to list them, but §10.1 does not check it and §13.4 says unknown ones are ignored.
  Our builders list them anyway.
- "Compatible with the group's parameters" (§7.3) includes the group's protocol version and
  cipher suite (§11.1), and every non-default GroupContext extension (§13.4).
- The key package signature is checked with ``leaf_node.signature_key`` (§10.1 says "the
  public key in ``leaf_node.credential``"; the credential binds to that key).
- Lifetime: ``now`` ± ``clock_skew`` must fall in ``not_before``..``not_after``; an empty
  range is always invalid; the total span is capped by ``max_lifetime`` (§7.2).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from veilpost.codec import Reader
from veilpost.crypto import CipherSuiteId
from veilpost.crypto.hpke import N_PK
from veilpost.mls.credential import Credential, CredentialType
from veilpost.mls.errors import UsageError, ValidationError
from veilpost.mls.extensions import (
    DEFAULT_EXTENSION_TYPES,
    Extension,
    ExtensionType,
    RequiredCapabilities,
    find_extension,
)
from veilpost.mls.key_package import KeyPackage
from veilpost.mls.leaf_node import LeafNode, LeafNodeSource, ProtocolVersion
from veilpost.mls.proposals import ProposalType

if TYPE_CHECKING:
    import enum

    from veilpost.crypto import CipherSuite
    from veilpost.mls.group_context import GroupContext

DEFAULT_PROPOSAL_TYPES = frozenset(int(t) for t in ProposalType)
"""Proposal types every implementation supports; they are not listed in capabilities (§7.2)."""

DAY = 24 * 60 * 60

DEFAULT_MAX_LIFETIME = 367 * DAY
"""The longest ``not_after - not_before`` accepted by default (§7.2: the application MUST set
one). Veilpost's own key packages live 90 days, but other implementations issue one-year key
packages (mls-rs: 365 days), so the default accepts a year, plus two days for clients that
backdate ``not_before`` against clock skew."""

DEFAULT_CLOCK_SKEW = 5 * 60
"""How far outside ``lifetime`` the current time may be, by default, before it counts."""


class CredentialRejected(Exception):
    """Raised by a :data:`CredentialValidator` to reject a credential; the message says why."""


CredentialValidator = Callable[[Credential, bytes, Credential | None], None]
"""The application's Authentication Service (§5.3.1).

Called as ``validator(credential, signature_key, predecessor)``. It must check that the
credential's identities are bound to ``signature_key`` (for ``x509``: the end-entity
certificate's key is ``signature_key``, §5.3) and match the reference identities the
application expects. ``predecessor`` is the credential of the leaf being replaced (Update,
Commit) or ``None``; when set, the new credential must also be a valid successor of it. It
returns ``None`` to accept and raises :class:`CredentialRejected` to reject.
"""


@dataclass(frozen=True)
class LifetimePolicy:
    """How the ``lifetime`` of ``key_package`` leaves is judged (§7.2, §7.3).

    ``max_lifetime`` is the longest accepted ``not_after - not_before`` in seconds (``None``:
    no limit, for test vectors only); ``clock_skew`` widens the accepted range at both ends.
    """

    max_lifetime: int | None = DEFAULT_MAX_LIFETIME
    clock_skew: int = DEFAULT_CLOCK_SKEW


DEFAULT_LIFETIME_POLICY = LifetimePolicy()


class GroupMembers:
    """The group's members as the cross-member rules of §7.3 see them: leaf index → LeafNode.

    Build it from the tree's non-blank leaves; :meth:`add` and :meth:`remove` keep it in step
    while a Commit's proposals are applied one by one (so that two Adds in one Commit cannot
    share a key). Lookups exclude one leaf index cheaply, so validating every leaf of a tree
    against the others costs O(n), not O(n²).
    """

    def __init__(self, leaves: Mapping[int, LeafNode] | None = None) -> None:
        self._leaves: dict[int, LeafNode] = {}
        self._by_signature_key: dict[bytes, set[int]] = {}
        self._by_encryption_key: dict[bytes, set[int]] = {}
        self._credential_types_in_use: Counter[int] = Counter()
        self._credential_type_support: Counter[int] = Counter()
        for leaf_index, leaf in (leaves or {}).items():
            self.add(leaf_index, leaf)

    def __len__(self) -> int:
        return len(self._leaves)

    def get(self, leaf_index: int | None) -> LeafNode | None:
        """The leaf node at ``leaf_index``, or ``None`` if that leaf is blank."""
        return None if leaf_index is None else self._leaves.get(leaf_index)

    def add(self, leaf_index: int, leaf: LeafNode) -> None:
        """Put ``leaf`` at the blank ``leaf_index``."""
        if leaf_index in self._leaves:
            raise UsageError(f"leaf {leaf_index} is already occupied")
        self._leaves[leaf_index] = leaf
        self._by_signature_key.setdefault(leaf.signature_key, set()).add(leaf_index)
        self._by_encryption_key.setdefault(leaf.encryption_key, set()).add(leaf_index)
        self._credential_types_in_use[leaf.credential.credential_type] += 1
        self._credential_type_support.update(set(leaf.capabilities.credentials))

    def remove(self, leaf_index: int) -> None:
        """Blank ``leaf_index``."""
        leaf = self._leaves.pop(leaf_index, None)
        if leaf is None:
            raise UsageError(f"leaf {leaf_index} is already blank")
        self._by_signature_key[leaf.signature_key].discard(leaf_index)
        self._by_encryption_key[leaf.encryption_key].discard(leaf_index)
        self._credential_types_in_use[leaf.credential.credential_type] -= 1
        self._credential_type_support.subtract(set(leaf.capabilities.credentials))

    # -- queries that leave out the leaf at ``excluding`` ---------------------------------------

    def signature_key_holder(self, key: bytes, excluding: int | None) -> int | None:
        """A leaf index other than ``excluding`` whose signature key is ``key``, if any."""
        return _other_holder(self._by_signature_key.get(key, set()), excluding)

    def encryption_key_holder(self, key: bytes, excluding: int | None) -> int | None:
        """A leaf index other than ``excluding`` whose encryption key is ``key``, if any."""
        return _other_holder(self._by_encryption_key.get(key, set()), excluding)

    def credential_types_in_use(self, excluding: int | None) -> set[int]:
        """The credential types of every member but ``excluding``."""
        in_use = Counter(self._credential_types_in_use)
        excluded = self.get(excluding)
        if excluded is not None:
            in_use[excluded.credential.credential_type] -= 1
        return {credential_type for credential_type, n in in_use.items() if n > 0}

    def members_not_supporting(self, credential_type: int, excluding: int | None) -> list[int]:
        """The leaf indexes, ``excluding`` left out, whose capabilities lack ``credential_type``."""
        excluded = self.get(excluding)
        others = len(self._leaves) - (excluded is not None)
        supporting = self._credential_type_support[credential_type]
        if excluded is not None and credential_type in excluded.capabilities.credentials:
            supporting -= 1
        if supporting == others:
            return []
        return sorted(
            i
            for i, leaf in self._leaves.items()
            if i != excluding and credential_type not in leaf.capabilities.credentials
        )


def _other_holder(holders: set[int], excluding: int | None) -> int | None:
    return min((i for i in holders if i != excluding), default=None)


# -- leaf nodes (§7.3) -------------------------------------------------------------------------


def validate_leaf_node(
    leaf_node: LeafNode,
    suite: CipherSuite,
    *,
    group_context: GroupContext | None,
    expected_source: LeafNodeSource | None,
    members: GroupMembers,
    now: int | None,
    credential_validator: CredentialValidator | None,
    leaf_index: int | None = None,
    replacing: LeafNode | None = None,
    lifetime_policy: LifetimePolicy = DEFAULT_LIFETIME_POLICY,
) -> None:
    """Check every rule of §7.3 (and the leaf rules of §7.2, §11.1, §13.4) for ``leaf_node``.

    ``expected_source`` is where the leaf appears: ``KEY_PACKAGE`` (a KeyPackage, for an Add),
    ``UPDATE`` (an Update proposal), ``COMMIT`` (a Commit's UpdatePath), or ``None`` (a leaf
    already in a ratchet tree: any source). ``leaf_index`` is the leaf's slot; it is needed
    for the signature of ``update`` and ``commit`` leaves. ``replacing`` is the leaf node
    this one replaces; for ``UPDATE`` and ``COMMIT`` it defaults to the member at
    ``leaf_index`` (pass it explicitly for an external Commit that removes an old leaf of the
    joiner). ``members`` is the group as it stands before this leaf takes its place.
    ``credential_validator`` ``None`` means the caller has validated the credential itself.

    Raises :class:`~veilpost.mls.errors.ValidationError` at the first rule broken.
    """
    group_id, version = _group_parameters(suite, group_context)
    source = leaf_node.leaf_node_source
    if expected_source is not None and source != expected_source:
        raise ValidationError(
            f"leaf node source is {source.name.lower()}; expected"
            f" {expected_source.name.lower()} here",
            check="leaf_node.source",
            section="7.3",
        )
    if source != LeafNodeSource.KEY_PACKAGE and (group_id is None or leaf_index is None):
        raise UsageError(
            f"validating a {source.name.lower()} leaf node needs the group context and the"
            " leaf index (both are bound into its signature)"
        )
    if expected_source in (LeafNodeSource.UPDATE, LeafNodeSource.COMMIT) and replacing is None:
        replacing = members.get(leaf_index)
    if expected_source == LeafNodeSource.UPDATE and replacing is None:
        raise UsageError(f"an Update replaces a member's leaf, but leaf {leaf_index} is blank")

    if len(leaf_node.encryption_key) != N_PK:
        raise ValidationError(
            f"encryption_key {_hex(leaf_node.encryption_key)} is {len(leaf_node.encryption_key)}"
            f" bytes; an X25519 public key is {N_PK}",
            check="leaf_node.encryption_key",
            section="7.2",
        )
    leaf_node.verify_signature(suite, group_id, leaf_index)
    _check_credential(leaf_node, credential_validator, replacing)
    _check_duplicate_extensions(leaf_node.extensions, "leaf_node", "LeafNode.extensions")
    _check_own_capabilities(leaf_node)
    _check_group_parameters(leaf_node, suite, version, group_context)
    _check_credential_types(leaf_node, members, leaf_index)
    _check_lifetime(leaf_node, now, lifetime_policy)
    if (
        expected_source in (LeafNodeSource.UPDATE, LeafNodeSource.COMMIT)
        and replacing is not None
        and replacing.encryption_key == leaf_node.encryption_key
    ):
        raise ValidationError(
            f"encryption_key {_hex(leaf_node.encryption_key)} is the key of the leaf node it"
            " replaces; an Update or a Commit must bring a fresh one",
            check="leaf_node.encryption_key_unchanged",
            section="7.3" if expected_source == LeafNodeSource.UPDATE else "12.4.2",
        )
    _check_unique_keys(leaf_node, members, leaf_index)


def _group_parameters(
    suite: CipherSuite, group_context: GroupContext | None
) -> tuple[bytes | None, int]:
    """The group id (``None`` without a group) and the protocol version leaves must support."""
    if group_context is None:
        return None, ProtocolVersion.MLS10
    if group_context.cipher_suite != suite.id:
        raise UsageError(
            f"suite 0x{suite.id:04x} is not the group's cipher suite"
            f" 0x{group_context.cipher_suite:04x}"
        )
    return group_context.group_id, group_context.version


def _check_credential(
    leaf_node: LeafNode,
    credential_validator: CredentialValidator | None,
    replacing: LeafNode | None,
) -> None:
    if credential_validator is None:
        return
    predecessor = None if replacing is None else replacing.credential
    try:
        credential_validator(leaf_node.credential, leaf_node.signature_key, predecessor)
    except CredentialRejected as exc:
        raise ValidationError(
            f"the Authentication Service rejected the {_credential(leaf_node.credential)}"
            f" for signature key {_hex(leaf_node.signature_key)}: {exc} (§5.3.1)",
            check="leaf_node.credential",
            section="7.3",
        ) from exc


def _check_duplicate_extensions(extensions: list[Extension], prefix: str, field: str) -> None:
    seen: set[int] = set()
    for extension in extensions:
        if extension.extension_type in seen:
            raise ValidationError(
                f"{field} has more than one extension of type"
                f" {_name(extension.extension_type, ExtensionType)}",
                check=f"{prefix}.duplicate_extension",
                section="13.4",
            )
        seen.add(extension.extension_type)


def _check_own_capabilities(leaf_node: LeafNode) -> None:
    """The leaf's credential type and non-default extensions are in its own capabilities."""
    capabilities = leaf_node.capabilities
    credential_type = leaf_node.credential.credential_type
    if credential_type not in capabilities.credentials:
        raise ValidationError(
            f"the leaf node's credential type {_name(credential_type, CredentialType)} is not"
            f" in its capabilities.credentials {_names(capabilities.credentials, CredentialType)}",
            check="leaf_node.capabilities.credential",
            section="7.2",
        )
    for extension in leaf_node.extensions:
        extension_type = extension.extension_type
        if extension_type not in DEFAULT_EXTENSION_TYPES and (
            extension_type not in capabilities.extensions
        ):
            raise ValidationError(
                f"the leaf node carries extension {_name(extension_type, ExtensionType)} but"
                f" its capabilities.extensions {_names(capabilities.extensions, ExtensionType)}"
                " do not list it",
                check="leaf_node.capabilities.extensions",
                section="7.3",
            )


def _check_group_parameters(
    leaf_node: LeafNode,
    suite: CipherSuite,
    version: int,
    group_context: GroupContext | None,
) -> None:
    """The leaf supports the group's version, cipher suite and extensions (§7.3, §11.1, §13.4)."""
    capabilities = leaf_node.capabilities
    if version not in capabilities.versions:
        raise ValidationError(
            f"capabilities.versions {_names(capabilities.versions, ProtocolVersion)} lack the"
            f" group's protocol version {_name(version, ProtocolVersion)}",
            check="leaf_node.capabilities.version",
            section="11.1",
        )
    if suite.id not in capabilities.cipher_suites:
        raise ValidationError(
            f"capabilities.cipher_suites {_names(capabilities.cipher_suites, CipherSuiteId)} lack"
            f" the cipher suite {_name(suite.id, CipherSuiteId)} in use",
            check="leaf_node.capabilities.cipher_suite",
            section="11.1",
        )
    if group_context is None:
        return
    required_extension = find_extension(
        group_context.extensions, ExtensionType.REQUIRED_CAPABILITIES
    )
    if required_extension is not None:
        reader = Reader(required_extension.extension_data)
        required = RequiredCapabilities.decode(reader)
        reader.finish("required_capabilities")
        _check_required(
            "extensions",
            required.extension_types,
            capabilities.extensions,
            DEFAULT_EXTENSION_TYPES,
            ExtensionType,
        )
        _check_required(
            "proposals",
            required.proposal_types,
            capabilities.proposals,
            DEFAULT_PROPOSAL_TYPES,
            ProposalType,
        )
        _check_required(
            "credentials",
            required.credential_types,
            capabilities.credentials,
            frozenset(),  # §11.1: no credential type is implicitly supported
            CredentialType,
        )
    for extension in group_context.extensions:
        extension_type = extension.extension_type
        if extension_type not in DEFAULT_EXTENSION_TYPES and (
            extension_type not in capabilities.extensions
        ):
            raise ValidationError(
                f"the group uses extension {_name(extension_type, ExtensionType)} in its"
                f" GroupContext, but capabilities.extensions"
                f" {_names(capabilities.extensions, ExtensionType)} do not list it",
                check="leaf_node.capabilities.group_context_extensions",
                section="13.4",
            )


def _check_required(
    kind: str,
    required: list[int],
    supported: list[int],
    defaults: frozenset[int],
    registry: type[enum.IntEnum],
) -> None:
    missing = [t for t in required if t not in defaults and t not in supported]
    if missing:
        raise ValidationError(
            f"the group's required_capabilities require {kind} {_names(missing, registry)},"
            f" missing from capabilities.{kind} {_names(supported, registry)}",
            check=f"leaf_node.capabilities.required_{kind}",
            section="7.3",
        )


def _check_credential_types(
    leaf_node: LeafNode, members: GroupMembers, leaf_index: int | None
) -> None:
    """Everyone supports this leaf's credential type; this leaf supports everyone's (§7.3)."""
    credential_type = leaf_node.credential.credential_type
    lacking = members.members_not_supporting(credential_type, leaf_index)
    if lacking:
        raise ValidationError(
            f"credential type {_name(credential_type, CredentialType)} is not in the"
            f" capabilities of the member(s) at leaf {', '.join(map(str, lacking))}",
            check="leaf_node.credential_type_unsupported_by_member",
            section="7.3",
        )
    supported = leaf_node.capabilities.credentials
    unsupported = sorted(members.credential_types_in_use(leaf_index) - set(supported))
    if unsupported:
        raise ValidationError(
            f"other members use credential type(s) {_names(unsupported, CredentialType)},"
            f" missing from capabilities.credentials {_names(supported, CredentialType)}",
            check="leaf_node.capabilities.credentials_in_use",
            section="7.3",
        )


def _check_lifetime(leaf_node: LeafNode, now: int | None, policy: LifetimePolicy) -> None:
    lifetime = leaf_node.lifetime
    if lifetime is None:  # only key_package leaves have one
        return
    not_before, not_after = lifetime.not_before, lifetime.not_after
    if not_after < not_before:
        raise ValidationError(
            f"lifetime is empty: not_after {not_after} is before not_before {not_before}",
            check="leaf_node.lifetime",
            section="7.3",
        )
    if policy.max_lifetime is not None and not_after - not_before > policy.max_lifetime:
        raise ValidationError(
            f"lifetime {not_before}..{not_after} spans {not_after - not_before} s, more than the"
            f" {policy.max_lifetime} s allowed",
            check="leaf_node.lifetime_too_long",
            section="7.2",
        )
    if now is None:
        return
    if not not_before - policy.clock_skew <= now <= not_after + policy.clock_skew:
        state = "not valid yet" if now < not_before else "expired"
        raise ValidationError(
            f"lifetime {not_before}..{not_after} is {state} at {now}"
            f" (clock skew allowed: {policy.clock_skew} s)",
            check="leaf_node.lifetime",
            section="7.3",
        )


def _check_unique_keys(leaf_node: LeafNode, members: GroupMembers, leaf_index: int | None) -> None:
    holder = members.signature_key_holder(leaf_node.signature_key, leaf_index)
    if holder is not None:
        raise ValidationError(
            f"signature_key {_hex(leaf_node.signature_key)} is already the key of leaf {holder}",
            check="leaf_node.duplicate_signature_key",
            section="7.3",
        )
    holder = members.encryption_key_holder(leaf_node.encryption_key, leaf_index)
    if holder is not None:
        raise ValidationError(
            f"encryption_key {_hex(leaf_node.encryption_key)} is already the key of leaf {holder}",
            check="leaf_node.duplicate_encryption_key",
            section="7.3",
        )


# -- key packages (§10.1) ----------------------------------------------------------------------


def validate_key_package(
    key_package: KeyPackage,
    suite: CipherSuite,
    *,
    group_context: GroupContext | None,
    members: GroupMembers,
    now: int | None,
    credential_validator: CredentialValidator | None,
    lifetime_policy: LifetimePolicy = DEFAULT_LIFETIME_POLICY,
) -> None:
    """Check every rule of §10.1 for ``key_package``, its leaf node's (§7.3) included.

    With ``group_context`` the key package is checked for an Add to that group (``members``
    is the group as the Add will find it); with ``None``, on its own against ``suite`` (when
    publishing it, or in a directory). Raises
    :class:`~veilpost.mls.errors.ValidationError` at the first rule broken.
    """
    version = ProtocolVersion.MLS10 if group_context is None else group_context.version
    if key_package.version != version:
        raise ValidationError(
            f"key package version {_name(key_package.version, ProtocolVersion)} is not"
            f" {_name(version, ProtocolVersion)}",
            check="key_package.version",
            section="10.1",
        )
    if key_package.cipher_suite != suite.id:
        raise ValidationError(
            f"key package cipher suite 0x{key_package.cipher_suite:04x} is not the suite in use,"
            f" 0x{suite.id:04x}",
            check="key_package.cipher_suite",
            section="10.1",
        )
    if len(key_package.init_key) != N_PK:
        raise ValidationError(
            f"init_key {_hex(key_package.init_key)} is {len(key_package.init_key)} bytes;"
            f" an X25519 public key is {N_PK}",
            check="key_package.init_key",
            section="10",
        )
    key_package.verify_signature(suite)
    validate_leaf_node(
        key_package.leaf_node,
        suite,
        group_context=group_context,
        expected_source=LeafNodeSource.KEY_PACKAGE,
        members=members,
        now=now,
        credential_validator=credential_validator,
        lifetime_policy=lifetime_policy,
    )
    if key_package.init_key == key_package.leaf_node.encryption_key:
        raise ValidationError(
            f"init_key {_hex(key_package.init_key)} is also the leaf node's encryption_key",
            check="key_package.init_key_equals_encryption_key",
            section="10.1",
        )
    _check_duplicate_extensions(key_package.extensions, "key_package", "KeyPackage.extensions")


# -- messages ----------------------------------------------------------------------------------


def _hex(value: bytes) -> str:
    return value[:8].hex() + ("…" if len(value) > 8 else "")


def _name(value: int, registry: type[enum.IntEnum]) -> str:
    try:
        return f"0x{value:04x} ({registry(value).name.lower()})"
    except ValueError:
        return f"0x{value:04x}"


def _names(values: Iterable[int], registry: type[enum.IntEnum]) -> str:
    return "[" + ", ".join(_name(v, registry) for v in values) + "]"


def _credential(credential: Credential) -> str:
    if credential.credential_type == CredentialType.BASIC:
        return f"basic credential {credential.identity[:32]!r}"
    return f"x509 credential with {len(credential.certificates)} certificate(s)"
