"""The secret tree and the sender ratchets (RFC 9420 §9): keys and nonces for PrivateMessage.

Theory of operation
-------------------

Each epoch's ``encryption_secret`` is the root of a tree shaped like the ratchet tree. A parent
node's secret gives its children theirs (``ExpandWithLabel(secret, "tree", "left" | "right",
Nh)``), and each leaf's secret starts two hash ratchets for that member: one for handshake
messages (proposals and commits), one for application messages (§9). Step ``j`` of a ratchet
gives the key and nonce of generation ``j`` and the secret of step ``j + 1`` (§9.1).

Forward secrecy rests on deletion (§9.2). :class:`SecretTree` keeps only what it may still need:

- node secrets are derived lazily, top down, the first time a leaf's ratchets are needed; a
  parent's secret is dropped as soon as both children have theirs, and a leaf's secret as soon
  as its two ratchets exist. What remains is a frontier of copath secrets that no one has used;
- a ratchet holds the secret of its next generation, and the key and nonce of each generation
  it skipped over, within a window (:class:`RatchetWindow`) for messages that arrive out of
  order. A key is dropped when it is used, or when the window moves past it.

Encryption takes the next generation of the member's own leaf
(:meth:`SecretTree.next_encryption_key`). Decryption asks for a (leaf, ratchet, generation)
(:meth:`SecretTree.decryption_key`), a context manager: the key is consumed only when the
``with`` block ends without an exception, that is, when the message decrypted. A forged or
corrupted message thus does not burn the key of the genuine one.

Python cannot wipe ``bytes``; "deleted" means this object no longer references the value.

The sender-data key and nonce (§6.3.2), derived from ``sender_data_secret`` and a sample of
the ciphertext, are the third kind of key of §9.1 and live here too.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from veilpost.codec import DecodeError, Reader, Writer
from veilpost.crypto import CipherSuite
from veilpost.mls import tree_math
from veilpost.mls.errors import ProtocolError, UsageError

__all__ = [
    "GenerationReusedError",
    "GenerationTooFarAheadError",
    "GenerationTooOldError",
    "HashRatchet",
    "PreparedKey",
    "RatchetKey",
    "RatchetType",
    "RatchetWindow",
    "SecretTree",
    "SecretTreeError",
    "sender_data_key_and_nonce",
]

MAX_GENERATION = 0xFFFF_FFFF
"""Generations are ``uint32`` (SenderData.generation, and the context of DeriveTreeSecret)."""


class RatchetType(enum.Enum):
    """The two ratchets of each leaf; the value is the label that starts it (§9)."""

    HANDSHAKE = "handshake"
    APPLICATION = "application"


class SecretTreeError(ProtocolError):
    """A message asks the secret tree for a key it cannot or must not give."""


class GenerationTooFarAheadError(SecretTreeError):
    """The generation skips more generations than :class:`RatchetWindow` allows."""


class GenerationTooOldError(SecretTreeError):
    """The generation is below the out-of-order window: its key, if it ever existed, is gone."""


class GenerationReusedError(SecretTreeError):
    """The generation's key was already used (to encrypt or to decrypt) and is deleted."""


@dataclass(frozen=True, slots=True)
class RatchetWindow:
    """How far a ratchet accepts messages out of order.

    ``out_of_order_tolerance``: keys of skipped generations are kept while they are at most
    this many generations below the ratchet's next generation; 0 means strictly in order.
    ``maximum_forward_distance``: a message may skip at most this many generations ahead of
    the next one, which bounds the work (and the keys kept) per message.
    """

    out_of_order_tolerance: int = 1000
    maximum_forward_distance: int = 1000

    def __post_init__(self) -> None:
        if self.out_of_order_tolerance < 0 or self.maximum_forward_distance < 0:
            raise UsageError(f"ratchet window bounds must not be negative: {self}")


@dataclass(frozen=True, slots=True)
class RatchetKey:
    """The AEAD key and nonce of one generation of a ratchet; ``repr()`` hides them."""

    generation: int
    key: bytes = field(repr=False)
    nonce: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class PreparedKey:
    """A key found for decryption but not yet consumed (:meth:`HashRatchet.prepare`), with
    the ratchet state that consuming it will install."""

    key: RatchetKey
    version: int
    # None: the key was a retained one, and the ratchet does not move.
    next_secret: bytes | None = field(repr=False)
    skipped: dict[int, RatchetKey] = field(repr=False)


class HashRatchet:
    """One sender's handshake or application ratchet (§9.1), with its out-of-order window."""

    __slots__ = ("_next_generation", "_retained", "_secret", "_suite", "_version", "name", "window")

    def __init__(
        self, suite: CipherSuite, secret: bytes, window: RatchetWindow, name: str = "ratchet"
    ) -> None:
        self._suite = suite
        self._secret = secret
        self._next_generation = 0
        self._retained: dict[int, RatchetKey] = {}
        self._version = 0  # bumped by every change, so a stale prepared step cannot commit
        self.window = window
        self.name = name

    def __repr__(self) -> str:
        return (
            f"HashRatchet({self.name}, next_generation={self._next_generation},"
            f" retained={len(self._retained)})"
        )

    @property
    def next_generation(self) -> int:
        """The generation whose secret the ratchet holds: one past the newest used."""
        return self._next_generation

    @property
    def retained_generations(self) -> tuple[int, ...]:
        """The skipped generations whose keys are still kept, ascending."""
        return tuple(sorted(self._retained))

    def _key(self, secret: bytes, generation: int) -> RatchetKey:
        suite = self._suite
        return RatchetKey(
            generation,
            key=suite.derive_tree_secret(secret, "key", generation, suite.aead_key_size),
            nonce=suite.derive_tree_secret(secret, "nonce", generation, suite.aead_nonce_size),
        )

    def _advance(self, secret: bytes, generation: int) -> bytes:
        return self._suite.derive_tree_secret(secret, "secret", generation, self._suite.kdf_size)

    def next_key(self) -> RatchetKey:
        """Use the next generation (to encrypt): return its key and delete it."""
        generation = self._next_generation
        if generation > MAX_GENERATION:
            raise UsageError(f"{self.name} is exhausted after generation {MAX_GENERATION}")
        key = self._key(self._secret, generation)
        self.commit(self._step(key, self._advance(self._secret, generation), {}))
        return key

    def prepare(self, generation: int) -> PreparedKey:
        """Find or derive the key of ``generation`` without changing the ratchet.

        Raises the :class:`SecretTreeError` that names why the key cannot be had.
        """
        if not 0 <= generation <= MAX_GENERATION:
            raise UsageError(f"generation must be a uint32, got {generation}")
        window = self.window
        start = self._next_generation
        if generation < start:
            retained = self._retained.get(generation)
            if retained is not None:
                return self._step(retained, None, {})
            oldest = start - window.out_of_order_tolerance
            if generation < oldest:
                raise GenerationTooOldError(
                    f"generation {generation} of {self.name} is older than the out-of-order"
                    f" window (generations {max(oldest, 0)}..{start - 1},"
                    f" tolerance {window.out_of_order_tolerance})",
                    check="secret_tree.generation_too_old",
                    section="9.2",
                )
            raise GenerationReusedError(
                f"generation {generation} of {self.name} was already used and its key deleted",
                check="secret_tree.generation_reused",
                section="9.2",
            )
        distance = generation - start
        if distance > window.maximum_forward_distance:
            raise GenerationTooFarAheadError(
                f"generation {generation} of {self.name} is {distance} generations ahead of"
                f" the next expected ({start}); the limit is {window.maximum_forward_distance}",
                check="secret_tree.generation_too_far_ahead",
                section="9.2",
            )
        # Walk forward, keeping the keys of skipped generations that will stay in the window.
        keep_from = generation + 1 - window.out_of_order_tolerance
        secret = self._secret
        skipped: dict[int, RatchetKey] = {}
        for g in range(start, generation):
            if g >= keep_from:
                skipped[g] = self._key(secret, g)
            secret = self._advance(secret, g)
        return self._step(self._key(secret, generation), self._advance(secret, generation), skipped)

    def _step(
        self, key: RatchetKey, next_secret: bytes | None, skipped: dict[int, RatchetKey]
    ) -> PreparedKey:
        return PreparedKey(key, self._version, next_secret, skipped)

    def commit(self, step: PreparedKey) -> None:
        """Consume the key of a prepared ``step``: the message it decrypted was authentic."""
        if step.version != self._version:
            raise UsageError(f"{self.name} changed since this key was prepared; prepare again")
        self._version += 1
        generation = step.key.generation
        if step.next_secret is None:
            del self._retained[generation]
            return
        self._secret = step.next_secret
        self._next_generation = generation + 1
        self._retained.update(step.skipped)
        oldest = self._next_generation - self.window.out_of_order_tolerance
        for g in [g for g in self._retained if g < oldest]:
            del self._retained[g]


class SecretTree:
    """The secret tree of one epoch (§9) over ``n_leaves`` leaves (a power of two), rooted at
    ``encryption_secret``.

    ``own_leaf`` is the member's own leaf index, needed to encrypt; ``None`` for a tree used
    only to decrypt. ``window`` bounds out-of-order delivery for every ratchet.
    """

    __slots__ = ("_n_leaves", "_nodes", "_ratchets", "_suite", "own_leaf", "window")

    def __init__(
        self,
        suite: CipherSuite,
        encryption_secret: bytes,
        n_leaves: int,
        *,
        own_leaf: int | None = None,
        window: RatchetWindow | None = None,
    ) -> None:
        root = tree_math.root(n_leaves)  # also checks that n_leaves is a power of two
        if own_leaf is not None and not 0 <= own_leaf < n_leaves:
            raise UsageError(f"own leaf {own_leaf} is outside a tree of {n_leaves} leaves")
        self._suite = suite
        self._n_leaves = n_leaves
        self._nodes: dict[int, bytes] = {root: encryption_secret}
        self._ratchets: dict[tuple[int, RatchetType], HashRatchet] = {}
        self.own_leaf = own_leaf
        self.window = window or RatchetWindow()

    def __repr__(self) -> str:
        return (
            f"SecretTree(n_leaves={self._n_leaves}, own_leaf={self.own_leaf},"
            f" node_secrets={len(self._nodes)}, ratchets={len(self._ratchets)})"
        )

    @property
    def n_leaves(self) -> int:
        """The number of leaves of the tree."""
        return self._n_leaves

    # -- encryption and decryption -----------------------------------------------------------

    def next_encryption_key(self, ratchet_type: RatchetType) -> RatchetKey:
        """The key and nonce for the own leaf's next message of ``ratchet_type``; used up by
        this call, as a key encrypts one message only (§9.1)."""
        if self.own_leaf is None:
            raise UsageError("this secret tree has no own leaf: it can only decrypt")
        return self.ratchet(self.own_leaf, ratchet_type).next_key()

    @contextmanager
    def decryption_key(
        self, leaf: int, ratchet_type: RatchetType, generation: int
    ) -> Iterator[RatchetKey]:
        """The key and nonce of ``generation`` of ``leaf``'s ``ratchet_type`` ratchet.

        A context manager: the key is consumed and deleted when the ``with`` block exits
        normally, and left in place if it raises (the message did not decrypt)::

            with tree.decryption_key(sender, RatchetType.APPLICATION, generation) as k:
                # guarded(): the nonce with the message's reuse_guard applied (§6.3.1)
                plaintext = suite.aead_open(k.key, guarded(k.nonce), aad, ciphertext)

        Raises :class:`GenerationReusedError`, :class:`GenerationTooOldError`,
        :class:`GenerationTooFarAheadError` or, for a leaf outside the tree,
        :class:`SecretTreeError`. On any exception the tree is left exactly as it was: the
        secrets of a leaf derived for this key are dropped again.
        """
        derived = (leaf, ratchet_type) in self._ratchets
        before = None if derived else (dict(self._nodes), dict(self._ratchets))
        try:
            ratchet = self.ratchet(leaf, ratchet_type)
            step = ratchet.prepare(generation)
            yield step.key
        except BaseException:
            if before is not None:
                self._nodes, self._ratchets = before
            raise
        ratchet.commit(step)

    # -- the tree ------------------------------------------------------------------------------

    def ratchet(self, leaf: int, ratchet_type: RatchetType) -> HashRatchet:
        """``leaf``'s ratchet of ``ratchet_type``, deriving the leaf's secrets on first use."""
        if not 0 <= leaf < self._n_leaves:
            raise SecretTreeError(
                f"leaf {leaf} is outside the secret tree of {self._n_leaves} leaves",
                check="secret_tree.leaf_out_of_range",
                section="9",
            )
        ratchet = self._ratchets.get((leaf, ratchet_type))
        if ratchet is None:
            self._derive_leaf(leaf)
            ratchet = self._ratchets[(leaf, ratchet_type)]
        return ratchet

    def _derive_leaf(self, leaf: int) -> None:
        suite = self._suite
        node = tree_math.leaf_to_node(leaf)
        path = [node, *tree_math.direct_path(node, self._n_leaves)]
        # The lowest ancestor that still has its secret; below it, nothing was derived yet.
        top = next((i for i, x in enumerate(path) if x in self._nodes), None)
        if top is None:  # only after retire(): the leaf's secrets are deleted
            raise SecretTreeError(
                f"the secrets of leaf {leaf} are deleted from this epoch's secret tree",
                check="secret_tree.leaf_deleted",
                section="9.2",
            )
        for parent in reversed(path[1 : top + 1]):
            secret = self._nodes.pop(parent)
            self._nodes[tree_math.left(parent)] = suite.expand_with_label(
                secret, "tree", b"left", suite.kdf_size
            )
            self._nodes[tree_math.right(parent)] = suite.expand_with_label(
                secret, "tree", b"right", suite.kdf_size
            )
        leaf_secret = self._nodes.pop(node)
        for ratchet_type in RatchetType:
            self._ratchets[(leaf, ratchet_type)] = HashRatchet(
                suite,
                suite.expand_with_label(leaf_secret, ratchet_type.value, b"", suite.kdf_size),
                self.window,
                name=f"the {ratchet_type.value} ratchet of leaf {leaf}",
            )

    def retire(self, senders: Iterable[int]) -> None:
        """Keep only what late application messages of ``senders`` need, once the epoch is
        over (§9.2, §15.3): their application ratchets, derived now if need be. Every node
        secret, every handshake ratchet and the ratchets of other leaves (this member's own
        among them) are deleted, and the tree can no longer encrypt."""
        keep = set(senders)
        for leaf in keep:
            self.ratchet(leaf, RatchetType.APPLICATION)
        self._nodes = {}
        self._ratchets = {
            (leaf, ratchet_type): ratchet
            for (leaf, ratchet_type), ratchet in self._ratchets.items()
            if leaf in keep and ratchet_type == RatchetType.APPLICATION
        }
        self.own_leaf = None

    # -- saved group state -------------------------------------------------------------------

    def encode(self, writer: Writer) -> None:
        """Serialize (for group state): the shape, the window, the node secrets still held, and
        each ratchet's next secret, next generation and retained keys. Not a wire format."""
        writer.uint32(self._n_leaves)
        writer.optional(self.own_leaf, Writer.uint32)
        writer.uint32(self.window.out_of_order_tolerance)
        writer.uint32(self.window.maximum_forward_distance)
        writer.uint32(len(self._nodes))
        for node, secret in sorted(self._nodes.items()):
            writer.uint32(node)
            writer.opaque(secret)
        writer.uint32(len(self._ratchets))
        for (leaf, ratchet_type), ratchet in sorted(
            self._ratchets.items(), key=lambda item: (item[0][0], item[0][1].value)
        ):
            writer.uint32(leaf)
            writer.uint8(_RATCHET_CODES[ratchet_type])
            writer.opaque(ratchet._secret)
            writer.uint64(ratchet._next_generation)
            writer.uint32(len(ratchet._retained))
            for generation, key in sorted(ratchet._retained.items()):
                writer.uint32(generation)
                writer.opaque(key.key)
                writer.opaque(key.nonce)

    @classmethod
    def decode(cls, reader: Reader, suite: CipherSuite) -> SecretTree:
        """Read what :meth:`encode` wrote; malformed data is a :class:`DecodeError`."""
        start = reader.offset
        n_leaves = reader.uint32("SecretTree.n_leaves")
        own_leaf = reader.optional(lambda r: r.uint32("SecretTree.own_leaf"), "own_leaf")
        window = RatchetWindow(
            reader.uint32("SecretTree.out_of_order_tolerance"),
            reader.uint32("SecretTree.maximum_forward_distance"),
        )
        try:
            tree = cls(suite, b"", n_leaves, own_leaf=own_leaf, window=window)
        except UsageError as exc:
            raise DecodeError(f"SecretTree at offset {start}: {exc}") from exc
        width = 2 * n_leaves - 1
        tree._nodes = {}
        for _ in range(reader.uint32("SecretTree.node count")):
            node = reader.uint32("SecretTree.node")
            if node >= width:
                raise DecodeError(f"SecretTree node {node} outside a tree of {n_leaves} leaves")
            tree._nodes[node] = reader.opaque("SecretTree.node_secret")
        for _ in range(reader.uint32("SecretTree.ratchet count")):
            leaf = reader.uint32("SecretTree.leaf")
            code = reader.uint8("SecretTree.ratchet_type")
            if leaf >= n_leaves or code >= len(_RATCHET_TYPES):
                raise DecodeError(f"SecretTree ratchet ({leaf}, {code}) is invalid")
            ratchet_type = _RATCHET_TYPES[code]
            ratchet = HashRatchet(
                suite,
                reader.opaque("HashRatchet.secret"),
                window,
                name=f"the {ratchet_type.value} ratchet of leaf {leaf}",
            )
            ratchet._next_generation = reader.uint64("HashRatchet.next_generation")
            if ratchet._next_generation > MAX_GENERATION + 1:
                raise DecodeError(f"HashRatchet generation {ratchet._next_generation} too large")
            for _ in range(reader.uint32("HashRatchet.retained count")):
                generation = reader.uint32("HashRatchet.generation")
                ratchet._retained[generation] = RatchetKey(
                    generation, reader.opaque("RatchetKey.key"), reader.opaque("RatchetKey.nonce")
                )
            tree._ratchets[(leaf, ratchet_type)] = ratchet
        return tree

    def stored_node_secrets(self) -> frozenset[int]:
        """The node indices whose tree secrets are still held (for inspection and tests)."""
        return frozenset(self._nodes)

    def derived_leaves(self) -> frozenset[int]:
        """The leaves whose ratchets exist (their node secrets are deleted)."""
        return frozenset(leaf for leaf, _ in self._ratchets)


_RATCHET_TYPES = (RatchetType.HANDSHAKE, RatchetType.APPLICATION)
_RATCHET_CODES = {ratchet_type: code for code, ratchet_type in enumerate(_RATCHET_TYPES)}


def sender_data_key_and_nonce(
    suite: CipherSuite, sender_data_secret: bytes, ciphertext: bytes
) -> tuple[bytes, bytes]:
    """The AEAD key and nonce of a PrivateMessage's sender data (§6.3.2), from the first
    ``KDF.Nh`` bytes of its ciphertext (all of it if shorter)."""
    sample = ciphertext[: suite.kdf_size]
    key = suite.expand_with_label(sender_data_secret, "key", sample, suite.aead_key_size)
    nonce = suite.expand_with_label(sender_data_secret, "nonce", sample, suite.aead_nonce_size)
    return key, nonce
