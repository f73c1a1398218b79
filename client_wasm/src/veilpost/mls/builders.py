"""Building a client's own leaf nodes (RFC 9420 §7.2) and key packages (§10).

What comes out passes :func:`veilpost.mls.validation.validate_leaf_node` and
:func:`~veilpost.mls.validation.validate_key_package`: the credential type and every
non-default extension are listed in the capabilities, the keys are fresh, and the init key is
not the encryption key. By default each published object also carries GREASE values (§13.5):
one random GREASE code point in each of ``capabilities.cipher_suites``, ``.extensions``,
``.proposals`` and ``.credentials``, and an empty GREASE extension (its type listed in the
capabilities) in the leaf's and the key package's ``extensions``. :func:`default_capabilities`
is the client's own view and never contains GREASE.

Randomness (keys, GREASE choices) comes from the suite's provider; time comes from the caller.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from veilpost.crypto import SUPPORTED_CIPHER_SUITES
from veilpost.mls.credential import Credential, CredentialType
from veilpost.mls.errors import UsageError
from veilpost.mls.extensions import DEFAULT_EXTENSION_TYPES, Extension
from veilpost.mls.key_package import KeyPackage
from veilpost.mls.leaf_node import (
    Capabilities,
    LeafNode,
    LeafNodeSource,
    Lifetime,
    ProtocolVersion,
)
from veilpost.mls.validation import DAY

if TYPE_CHECKING:
    from veilpost.crypto import CipherSuite

GREASE_VALUES: tuple[int, ...] = tuple(0x0A0A + 0x1010 * i for i in range(15))
"""The code points reserved for GREASE in every MLS registry (§13.5): 0x0A0A … 0xEAEA."""

KEY_PACKAGE_LIFETIME = 90 * DAY
"""How long Veilpost's key packages are valid."""


def default_capabilities() -> Capabilities:
    """What this implementation supports: ``mls10``, both cipher suites, ``basic`` credentials.

    No extension or proposal types are listed: Veilpost supports only the default ones, which
    are never listed (§7.2).
    """
    return Capabilities(
        versions=[ProtocolVersion.MLS10],
        cipher_suites=list(SUPPORTED_CIPHER_SUITES),
        extensions=[],
        proposals=[],
        credentials=[CredentialType.BASIC],
    )


def default_lifetime(now: int) -> Lifetime:
    """``now`` .. ``now`` + 90 days, in Unix seconds."""
    return Lifetime(now, now + KEY_PACKAGE_LIFETIME)


def grease_value(suite: CipherSuite) -> int:
    """A random GREASE code point, from the suite's random source."""
    return GREASE_VALUES[suite.random_bytes(1)[0] % len(GREASE_VALUES)]


def with_grease(capabilities: Capabilities, suite: CipherSuite) -> Capabilities:
    """A copy of ``capabilities`` with one random GREASE value added to each open list (§13.5).

    A list that already holds a GREASE value is kept as it is. ``versions`` is left alone:
    §13.5 does not list it among the GREASE fields.
    """

    def plus_one(values: list[int]) -> list[int]:
        if any(v in GREASE_VALUES for v in values):
            return values
        return [*values, grease_value(suite)]

    return replace(
        capabilities,
        cipher_suites=plus_one(capabilities.cipher_suites),
        extensions=plus_one(capabilities.extensions),
        proposals=plus_one(capabilities.proposals),
        credentials=plus_one(capabilities.credentials),
    )


def _grease_extension(capabilities: Capabilities) -> Extension:
    """An empty extension whose type is a GREASE value ``capabilities`` already lists."""
    extension_type = next(t for t in capabilities.extensions if t in GREASE_VALUES)
    return Extension(extension_type, b"")


def _check_listed(
    capabilities: Capabilities, credential: Credential, extensions: list[Extension]
) -> None:
    # The objects built here must pass §7.3; a caller's mistake is a UsageError, not a
    # leaf node that every peer will reject.
    if credential.credential_type not in capabilities.credentials:
        raise UsageError(
            f"credential type {credential.credential_type.name.lower()} is not in"
            f" capabilities.credentials {capabilities.credentials}"
        )
    for extension in extensions:
        extension_type = extension.extension_type
        if extension_type not in DEFAULT_EXTENSION_TYPES and (
            extension_type not in capabilities.extensions
        ):
            raise UsageError(
                f"extension type 0x{extension_type:04x} is not in capabilities.extensions"
                f" {capabilities.extensions}"
            )


def new_leaf_node(
    suite: CipherSuite,
    credential: Credential,
    signature_private_key: bytes,
    *,
    source: LeafNodeSource = LeafNodeSource.KEY_PACKAGE,
    lifetime: Lifetime | None = None,
    parent_hash: bytes | None = None,
    group_id: bytes | None = None,
    leaf_index: int | None = None,
    capabilities: Capabilities | None = None,
    extensions: Iterable[Extension] = (),
    encryption_key_pair: tuple[bytes, bytes] | None = None,
    grease: bool = True,
) -> tuple[LeafNode, bytes]:
    """Build and sign a leaf node; return it with the encryption private key.

    ``lifetime`` goes with (and only with) the ``key_package`` source, ``parent_hash`` with
    ``commit``; ``group_id`` and ``leaf_index`` are required for ``update`` and ``commit``.
    ``encryption_key_pair`` is ``(private_key, public_key)``; by default a fresh HPKE pair
    (a ``commit`` leaf takes the pair TreeKEM derives from its path secret).
    """
    if source == LeafNodeSource.KEY_PACKAGE and lifetime is None:
        raise UsageError("a key_package leaf node needs a lifetime (see default_lifetime)")
    capabilities = capabilities or default_capabilities()
    leaf_extensions = list(extensions)
    _check_listed(capabilities, credential, leaf_extensions)
    if grease:
        capabilities = with_grease(capabilities, suite)
        leaf_extensions.append(_grease_extension(capabilities))
    encryption_private_key, encryption_key = encryption_key_pair or suite.hpke_key_pair()
    leaf = LeafNode(
        encryption_key=encryption_key,
        signature_key=suite.signature_public_key(signature_private_key),
        credential=credential,
        capabilities=capabilities,
        leaf_node_source=source,
        lifetime=lifetime,
        parent_hash=parent_hash,
        extensions=leaf_extensions,
    )
    return leaf.sign(suite, signature_private_key, group_id, leaf_index), encryption_private_key


def new_key_package(
    suite: CipherSuite,
    credential: Credential,
    signature_private_key: bytes,
    *,
    now: int,
    lifetime: Lifetime | None = None,
    capabilities: Capabilities | None = None,
    extensions: Iterable[Extension] = (),
    leaf_extensions: Iterable[Extension] = (),
    grease: bool = True,
) -> tuple[KeyPackage, bytes, bytes]:
    """Build and sign a key package for ``suite``.

    Returns ``(key_package, init_private_key, encryption_private_key)``. The lifetime defaults
    to :func:`default_lifetime` of ``now``; ``extensions`` go in the key package,
    ``leaf_extensions`` in its leaf node, and every non-default type among them must be in
    ``capabilities`` (default: :func:`default_capabilities`).
    """
    capabilities = capabilities or default_capabilities()
    package_extensions = list(extensions)
    _check_listed(capabilities, credential, package_extensions)
    leaf, encryption_private_key = new_leaf_node(
        suite,
        credential,
        signature_private_key,
        lifetime=lifetime or default_lifetime(now),
        capabilities=capabilities,
        extensions=leaf_extensions,
        grease=grease,
    )
    if grease:
        package_extensions.append(_grease_extension(leaf.capabilities))
    init_private_key, init_key = suite.hpke_key_pair()
    key_package = KeyPackage(
        cipher_suite=suite.id,
        init_key=init_key,
        leaf_node=leaf,
        extensions=package_extensions,
    )
    return key_package.sign(suite, signature_private_key), init_private_key, encryption_private_key
