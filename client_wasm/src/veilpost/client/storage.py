"""The client's local state: encrypted key-value records and message history in one SQLite file.

Theory of operation
-------------------

The user holds a 32-byte *store key* (:func:`new_key`, :func:`parse_key`, or
:func:`key_from_passphrase`); it is never written to the file. Each file carries its own random
32-byte salt, and the sub-keys come from HKDF-SHA256 (RFC 5869) over both::

    prk      = HKDF-Extract(salt = file salt, IKM = store key)
    aead_key = HKDF-Expand(prk, "veilpost store v1 aead", 32)   # ChaCha20-Poly1305
    mac_key  = HKDF-Expand(prk, "veilpost store v1 mac", 32)    # HMAC-SHA256

so two files opened with the same store key share no sub-key, and nothing sealed in one file
opens in another. A *key check value* (a constant sealed under ``aead_key``) is written when
the file is created; opening the file with another key fails it and raises :class:`WrongKey` at
:meth:`Store.open`, before any data is read.

Names never appear in clear. A record's row is found by ``HMAC(mac_key, "record" | namespace |
key)`` and listed by ``HMAC(mac_key, "namespace" | namespace)``; a message's row by
``HMAC(mac_key, "conversation" | conversation)`` and ``HMAC(mac_key, "message" | conversation |
message id)``. Every field in these inputs has a 4-byte length prefix, so no two different
inputs frame to the same bytes. The clear key and the clear message id are stored sealed beside
the value, so :meth:`Store.items` and :meth:`Store.messages` can return them.

Every sealed field is ``nonce || ciphertext || tag`` with a fresh random 12-byte nonce. Its
additional authenticated data names the table, the field and the row: the namespace and key
(or conversation, message id, ``sent_at_ns`` and ``sequence``). A sealed value copied to
another row, another field or another file, a changed time or sequence and a flipped byte all
fail authentication when read, and raise :class:`StoreCorrupted`.

History is ordered by ``(sent_at_ns, message_id)``. SQLite sees only the time, so messages that
share a time are ordered after their ids are opened: a page reads whole groups of equal times at
its two ends, which costs nothing unless many messages share one nanosecond.

What the file reveals without the key: how many records each namespace holds, how many
messages each conversation holds, and their ``sent_at_ns`` and ``sequence`` (kept in clear so
that SQLite can order and page them), and the sizes of values. Not content, keys, namespaces,
conversation ids or message ids. What the store cannot detect: rows deleted as a whole, or the
whole file rolled back to an older copy. ``secure_delete`` is on, so deleted rows are
overwritten in the file rather than left in free pages.

Durability: WAL journal with ``synchronous=FULL``; every write outside :meth:`Store.transaction`
is its own transaction, and a crash leaves the last committed state. Connections are opened with
``check_same_thread=False`` so an asyncio application may call from a worker thread, but a store
must not be used by two threads at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Final

from veilpost.crypto.backend import Aead
from veilpost.crypto.errors import AeadAuthenticationError
from veilpost.crypto.provider import CryptoProvider

KEY_SIZE: Final = 32
SCHEMA_VERSION: Final = 1
MAX_PAGE: Final = 1000
DEFAULT_PBKDF2_ITERATIONS: Final = 200_000

_AEAD: Final = Aead.CHACHA20_POLY1305  # the faster AEAD of the pure backend
_NONCE_SIZE: Final = _AEAD.nonce_size
_MIN_SEALED: Final = _NONCE_SIZE + _AEAD.tag_size
_SALT_SIZE: Final = 32
_MIN_PASSPHRASE_SALT: Final = 16  # NIST SP 800-132 §5.1: at least 128 bits
_KEY_CHECK: Final = b"veilpost store key check"
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")

# One statement each: executescript() would commit the transaction that creates the file.
_SCHEMA: Final = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "CREATE TABLE store_meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
    """CREATE TABLE records (
        lookup BLOB PRIMARY KEY,
        namespace_tag BLOB NOT NULL,
        sealed_key BLOB NOT NULL,
        sealed_value BLOB NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX records_by_namespace ON records (namespace_tag)",
    """CREATE TABLE messages (
        conversation_tag BLOB NOT NULL,
        message_tag BLOB NOT NULL,
        sent_at_ns INTEGER NOT NULL,
        sequence INTEGER,
        sealed_id BLOB NOT NULL,
        sealed_record BLOB NOT NULL,
        PRIMARY KEY (conversation_tag, message_tag)
    ) WITHOUT ROWID""",
    "CREATE INDEX messages_by_time ON messages (conversation_tag, sent_at_ns)",
)
_TABLES: Final = frozenset({"schema_version", "store_meta", "records", "messages"})


class StoreError(Exception):
    """Base class of the errors of :mod:`veilpost.client.storage`."""


class WrongKey(StoreError):
    """The key does not open this file: its key check value fails authentication."""


class StoreCorrupted(StoreError):
    """The file is damaged or was altered: a stored value fails authentication or is missing."""


@dataclass(frozen=True, order=True)
class MessageCursor:
    """A position in a conversation's history: messages are ordered by this pair."""

    sent_at_ns: int
    message_id: str


@dataclass(frozen=True)
class StoredMessage:
    """One message of a conversation's history, as :class:`Store` returns it."""

    conversation: str
    message_id: str
    sent_at_ns: int
    sequence: int | None
    record: bytes

    @property
    def cursor(self) -> MessageCursor:
        """This message's position, to pass as ``before=`` or ``after=`` for the next page."""
        return MessageCursor(self.sent_at_ns, self.message_id)


# -- keys --------------------------------------------------------------------------------------


def new_key() -> bytes:
    """Return a fresh random 32-byte store key."""
    return secrets.token_bytes(KEY_SIZE)


def parse_key(text: str) -> bytes:
    """Decode a 32-byte store key written as 64 hex digits or as base64 (standard or URL-safe).

    Surrounding whitespace is ignored and base64 padding is optional. Anything else raises
    ``ValueError``; the message gives only the length, never the text, which is a secret.
    """
    stripped = text.strip()
    if _HEX_KEY.fullmatch(stripped):
        return bytes.fromhex(stripped)
    standard = stripped.replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_SIZE:
        raise ValueError(
            f"a store key must be {KEY_SIZE} bytes written as 64 hex digits or as base64;"
            f" got {len(stripped)} characters that are neither"
        )
    return key


def key_from_passphrase(
    passphrase: str, salt: bytes, *, iterations: int = DEFAULT_PBKDF2_ITERATIONS
) -> bytes:
    """Derive a 32-byte store key with PBKDF2-HMAC-SHA256 (RFC 8018 §5.2).

    ``salt`` (at least 16 bytes) must be kept by the caller to derive the same key again.
    """
    if not passphrase:
        raise ValueError("the passphrase must not be empty")
    if len(salt) < _MIN_PASSPHRASE_SALT:
        raise ValueError(f"the salt must be at least {_MIN_PASSPHRASE_SALT} bytes, got {len(salt)}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    password = passphrase.encode("utf-8")
    native = getattr(hashlib, "pbkdf2_hmac", None)  # absent where hashlib lacks OpenSSL (Pyodide)
    if native is not None:
        return bytes(native("sha256", password, salt, iterations, KEY_SIZE))
    return _pbkdf2_hmac_sha256(password, salt, iterations, KEY_SIZE)


def _pbkdf2_hmac_sha256(password: bytes, salt: bytes, iterations: int, length: int) -> bytes:
    """PBKDF2 with HMAC-SHA256, for interpreters whose ``hashlib`` has no ``pbkdf2_hmac``."""
    keyed = hmac.new(password, digestmod=hashlib.sha256)  # the key's pads are hashed once
    blocks = []
    for index in range(1, -(-length // 32) + 1):
        mac = keyed.copy()
        mac.update(salt + index.to_bytes(4, "big"))
        u = mac.digest()
        block = int.from_bytes(u, "big")
        for _ in range(iterations - 1):
            mac = keyed.copy()
            mac.update(u)
            u = mac.digest()
            block ^= int.from_bytes(u, "big")
        blocks.append(block.to_bytes(32, "big"))
    return b"".join(blocks)[:length]


def _check_store_key(key: bytes) -> None:
    if not isinstance(key, bytes):
        raise TypeError(f"the store key must be bytes, got {type(key).__name__}")
    if len(key) != KEY_SIZE:
        raise ValueError(f"the store key must be {KEY_SIZE} bytes, got {len(key)}")


# -- framing -----------------------------------------------------------------------------------


def _frame(*fields: bytes | str) -> bytes:
    """Concatenate fields, each behind a 4-byte length, so distinct field lists never collide."""
    out = bytearray()
    for field in fields:
        data = field.encode("utf-8") if isinstance(field, str) else field
        out += len(data).to_bytes(4, "big") + data
    return bytes(out)


_KEY_CHECK_AAD: Final = _frame("store_meta.key_check")


def _int64(what: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"{what} must fit in a signed 64-bit integer, got {value}")
    return value


def _text(what: str, value: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    return value


def _blob(what: str, value: bytes) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"{what} must be bytes, got {type(value).__name__}")
    return value


def _message_aad(conversation: str, message_id: str, sent_at_ns: int, seq: int | None) -> bytes:
    sequence = b"" if seq is None else struct.pack(">q", seq)
    return _frame(
        "messages.sealed_record", conversation, message_id, struct.pack(">q", sent_at_ns), sequence
    )


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be an integer in 1..{MAX_PAGE}, got {limit!r}")


# -- the store ---------------------------------------------------------------------------------

_MessageRow = tuple[bytes, int, int | None, bytes, bytes]
_PositionFilter = Callable[["MessageCursor"], bool]
_MESSAGE_COLUMNS: Final = "message_tag, sent_at_ns, sequence, sealed_id, sealed_record"


class Store:
    """An open encrypted store. Make one with :meth:`open`; close it with :meth:`close`.

    Also a context manager that closes the store on exit.
    """

    def __init__(
        self,
        path: str,
        connection: sqlite3.Connection,
        provider: CryptoProvider,
        aead_key: bytes,
        mac_key: bytes,
    ) -> None:
        """Internal: use :meth:`open`."""
        self.path = path
        self._connection: sqlite3.Connection | None = connection
        self._provider = provider
        self._aead_key = aead_key
        self._mac_key = mac_key
        self._depth = 0

    # -- opening and closing -------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], key: bytes, *, provider: CryptoProvider | None = None
    ) -> Store:
        """Open the store at ``path`` (``":memory:"`` for a private in-memory one) with ``key``.

        A missing or empty file becomes a new store. Raises :class:`WrongKey` if ``key`` is not
        the one the file was created with, :class:`StoreCorrupted` if the file is not a readable
        store, :class:`StoreError` if it is another SQLite database or another schema version,
        and ``ValueError`` if ``key`` is not 32 bytes.
        """
        _check_store_key(key)
        provider = provider or CryptoProvider()
        name = os.fspath(path)
        try:
            connection = sqlite3.connect(name, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {name!r}: {exc}") from exc
        try:
            cls._configure(connection)
            store = cls(name, connection, provider, b"", b"")
            meta = store._read_meta()
            if meta is None:
                with store.transaction():  # BEGIN IMMEDIATE: one connection creates the file
                    meta = store._read_meta()
                    if meta is None:
                        store._create(key)
            if meta is not None:
                store._unlock(key, *meta)
        except BaseException as exc:
            connection.close()
            if isinstance(exc, sqlite3.OperationalError):
                raise StoreError(f"cannot open store {name!r}: {exc}") from exc
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreCorrupted(f"{name!r} is not a readable SQLite file: {exc}") from exc
            raise
        return store

    @staticmethod
    def _configure(connection: sqlite3.Connection) -> None:
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("PRAGMA secure_delete = ON")
        connection.execute("PRAGMA journal_mode = WAL")  # ":memory:" stays in "memory" mode
        connection.execute("PRAGMA synchronous = FULL")

    def _read_meta(self) -> tuple[bytes, bytes] | None:
        """Return the file's salt and key check value, or ``None`` if the database is empty."""
        tables = {
            row[0] for row in self._execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if not tables:
            return None
        if "schema_version" not in tables:
            raise StoreError(
                f"{self.path!r} is an SQLite database but not a Veilpost store"
                f" (tables: {', '.join(sorted(tables))})"
            )
        versions = self._execute("SELECT version FROM schema_version").fetchall()
        if versions != [(SCHEMA_VERSION,)]:
            found = ", ".join(str(v[0]) for v in versions) or "none"
            raise StoreError(
                f"{self.path!r} has store schema version {found}; this veilpost reads version"
                f" {SCHEMA_VERSION}"
            )
        if missing_tables := _TABLES - tables:
            missing = ", ".join(sorted(missing_tables))
            raise StoreCorrupted(f"{self.path!r} lacks the store tables {missing}")
        meta: dict[str, object] = dict(self._execute("SELECT name, value FROM store_meta"))
        salt, key_check = meta.get("salt"), meta.get("key_check")
        if not isinstance(salt, bytes) or not isinstance(key_check, bytes):
            raise StoreCorrupted(f"{self.path!r} lacks its salt or key check value")
        return salt, key_check

    def _create(self, key: bytes) -> None:
        """Create the schema, the salt and the key check value in an empty database."""
        for statement in _SCHEMA:
            self._execute(statement)
        self._execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        salt = self._provider.random_bytes(_SALT_SIZE)
        self._derive_keys(key, salt)
        key_check = self._seal(_KEY_CHECK_AAD, _KEY_CHECK)
        for name, value in (("salt", salt), ("key_check", key_check)):
            self._execute("INSERT INTO store_meta (name, value) VALUES (?, ?)", (name, value))

    def _unlock(self, key: bytes, salt: bytes, key_check: bytes) -> None:
        """Derive the sub-keys of an existing file; :class:`WrongKey` if its check fails."""
        self._derive_keys(key, salt)
        try:
            plaintext = self._open(_KEY_CHECK_AAD, key_check, "the key check value")
        except StoreCorrupted:
            self._aead_key = self._mac_key = b""
            raise WrongKey(f"the key does not open store {self.path!r}") from None
        if plaintext != _KEY_CHECK:
            raise StoreCorrupted(f"{self.path!r} has an unexpected key check value")

    def _derive_keys(self, key: bytes, salt: bytes) -> None:
        backend = self._provider.backend
        prk = backend.hkdf_extract(salt, key)
        self._aead_key = backend.hkdf_expand(prk, b"veilpost store v1 aead", _AEAD.key_size)
        self._mac_key = backend.hkdf_expand(prk, b"veilpost store v1 mac", 32)

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file and empty it, so that the file
        alone holds everything (the browser worker saves that file)."""
        if self._depth:
            raise StoreError("cannot checkpoint inside a transaction")
        self._execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def close(self) -> None:
        """Close the file. Idempotent; any call after it raises :class:`StoreError`."""
        if self._connection is None:
            return
        if self._depth:
            raise StoreError("cannot close the store inside a transaction")
        self._connection.close()
        self._connection = None
        self._aead_key = self._mac_key = b""

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._connection is None else "open"
        return f"Store({self.path!r}, {state})"

    @property
    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            raise StoreError(f"store {self.path!r} is closed")
        return self._connection

    def _execute(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        """Run one statement; SQLite's own errors become :class:`StoreError` subclasses."""
        try:
            return self._db.execute(sql, params)
        except sqlite3.OperationalError as exc:  # locked, read-only, disk full, I/O error
            raise StoreError(f"store {self.path!r}: {exc}") from exc
        except sqlite3.DatabaseError as exc:  # a malformed file
            raise StoreCorrupted(f"store {self.path!r}: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Make everything written inside one atomic unit: it all commits, or none of it.

        Nestable: an inner transaction is a savepoint, undone alone if it raises inside an
        outer one that then goes on. Any exception, including ``KeyboardInterrupt``, rolls back.
        """
        depth = self._depth
        savepoint = f"veilpost_{depth}"
        self._execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {savepoint}")
        self._depth = depth + 1
        try:
            yield
            self._execute("COMMIT" if depth == 0 else f"RELEASE {savepoint}")
        except BaseException:
            # SQLite may have rolled back already (disk full, I/O error), or the store be closed.
            if self._connection is not None and self._connection.in_transaction:
                if depth == 0:
                    self._execute("ROLLBACK")
                else:
                    self._execute(f"ROLLBACK TO {savepoint}")
                    self._execute(f"RELEASE {savepoint}")
            raise
        finally:
            self._depth = depth

    # -- sealing -------------------------------------------------------------------------------

    def _tag(self, *fields: bytes | str) -> bytes:
        return self._provider.backend.hmac_sha256(self._mac_key, _frame(*fields))

    def _seal(self, aad: bytes, plaintext: bytes) -> bytes:
        nonce = self._provider.random_bytes(_NONCE_SIZE)
        backend = self._provider.backend
        return nonce + backend.aead_seal(_AEAD, self._aead_key, nonce, aad, plaintext)

    def _open(self, aad: bytes, sealed: object, what: str) -> bytes:
        if not isinstance(sealed, bytes) or len(sealed) < _MIN_SEALED:
            raise StoreCorrupted(f"{what} is not a sealed value (tampered)")
        nonce, ciphertext = sealed[:_NONCE_SIZE], sealed[_NONCE_SIZE:]
        try:
            return self._provider.backend.aead_open(_AEAD, self._aead_key, nonce, aad, ciphertext)
        except AeadAuthenticationError:
            raise StoreCorrupted(
                f"{what} fails authentication (tampered, or moved from another row)"
            ) from None

    def _open_text(self, aad: bytes, sealed: object, what: str) -> str:
        try:
            return self._open(aad, sealed, what).decode("utf-8")
        except UnicodeDecodeError:
            raise StoreCorrupted(f"{what} is not UTF-8") from None

    # -- key-value records ---------------------------------------------------------------------

    def get(self, namespace: str, key: str) -> bytes | None:
        """Return the value of ``key`` in ``namespace``, or ``None`` if there is none."""
        lookup = self._tag("record", _text("namespace", namespace), _text("key", key))
        row = self._execute(
            "SELECT sealed_value FROM records WHERE lookup = ?", (lookup,)
        ).fetchone()
        if row is None:
            return None
        aad = _frame("records.sealed_value", namespace, key)
        return self._open(aad, row[0], f"the value of {key!r} in namespace {namespace!r}")

    def put(self, namespace: str, key: str, value: bytes) -> None:
        """Set ``key`` in ``namespace`` to ``value``, replacing any previous value."""
        lookup = self._tag("record", _text("namespace", namespace), _text("key", key))
        sealed_key = self._seal(_frame("records.sealed_key", namespace, lookup), key.encode())
        sealed_value = self._seal(
            _frame("records.sealed_value", namespace, key), _blob("value", value)
        )
        self._execute(
            "INSERT INTO records (lookup, namespace_tag, sealed_key, sealed_value)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (lookup) DO UPDATE SET"
            " sealed_key = excluded.sealed_key, sealed_value = excluded.sealed_value",
            (lookup, self._tag("namespace", namespace), sealed_key, sealed_value),
        )

    def delete(self, namespace: str, key: str) -> None:
        """Remove ``key`` from ``namespace``; nothing happens if it is absent."""
        lookup = self._tag("record", _text("namespace", namespace), _text("key", key))
        self._execute("DELETE FROM records WHERE lookup = ?", (lookup,))

    def items(self, namespace: str) -> list[tuple[str, bytes]]:
        """Return every ``(key, value)`` of ``namespace``, sorted by key."""
        namespace_tag = self._tag("namespace", _text("namespace", namespace))
        rows = self._execute(
            "SELECT lookup, sealed_key, sealed_value FROM records WHERE namespace_tag = ?",
            (namespace_tag,),
        ).fetchall()
        items = []
        for lookup, sealed_key, sealed_value in rows:
            key = self._open_text(
                _frame("records.sealed_key", namespace, lookup),
                sealed_key,
                f"a key in namespace {namespace!r}",
            )
            aad = _frame("records.sealed_value", namespace, key)
            items.append(
                (key, self._open(aad, sealed_value, f"the value of {key!r} in {namespace!r}"))
            )
        items.sort(key=lambda item: item[0])
        return items

    # -- message history -----------------------------------------------------------------------

    def add_message(
        self,
        conversation: str,
        message_id: str,
        *,
        sent_at_ns: int,
        sequence: int | None,
        record: bytes,
    ) -> bool:
        """Store a message; return ``False``, changing nothing, if its id is already there."""
        conversation_tag = self._tag("conversation", _text("conversation", conversation))
        message_tag = self._tag("message", conversation, _text("message_id", message_id))
        _int64("sent_at_ns", sent_at_ns)
        if sequence is not None:
            _int64("sequence", sequence)
        sealed_id = self._seal(
            _frame("messages.sealed_id", conversation, message_tag), message_id.encode()
        )
        sealed_record = self._seal(
            _message_aad(conversation, message_id, sent_at_ns, sequence), _blob("record", record)
        )
        cursor = self._execute(
            f"INSERT INTO messages (conversation_tag, {_MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (conversation_tag, message_tag, sent_at_ns, sequence, sealed_id, sealed_record),
        )
        return cursor.rowcount == 1

    def update_message(self, conversation: str, message_id: str, record: bytes) -> None:
        """Replace the record of a stored message; ``KeyError`` if there is no such message."""
        conversation_tag = self._tag("conversation", _text("conversation", conversation))
        message_tag = self._tag("message", conversation, _text("message_id", message_id))
        _blob("record", record)
        with self.transaction():
            row = self._execute(
                "SELECT sent_at_ns, sequence FROM messages"
                " WHERE conversation_tag = ? AND message_tag = ?",
                (conversation_tag, message_tag),
            ).fetchone()
            if row is None:
                raise KeyError(f"no message {message_id!r} in conversation {conversation!r}")
            sent_at_ns, sequence = row
            sealed = self._seal(
                _message_aad(conversation, message_id, sent_at_ns, sequence), record
            )
            self._execute(
                "UPDATE messages SET sealed_record = ?"
                " WHERE conversation_tag = ? AND message_tag = ?",
                (sealed, conversation_tag, message_tag),
            )

    def get_message(self, conversation: str, message_id: str) -> StoredMessage | None:
        """Return one message, or ``None`` if it is not stored."""
        conversation_tag = self._tag("conversation", _text("conversation", conversation))
        message_tag = self._tag("message", conversation, _text("message_id", message_id))
        rows = self._message_rows(
            conversation, conversation_tag, " AND message_tag = ?", (message_tag,)
        )
        if not rows:
            return None
        self._open_message_id(conversation, rows[0])  # the id column must authenticate too
        return self._message(conversation, message_id, rows[0])

    def count_messages(self, conversation: str) -> int:
        """Return how many messages of ``conversation`` are stored."""
        conversation_tag = self._tag("conversation", _text("conversation", conversation))
        row = self._execute(
            "SELECT COUNT(*) FROM messages WHERE conversation_tag = ?", (conversation_tag,)
        ).fetchone()
        return int(row[0])

    def delete_conversation(self, conversation: str) -> None:
        """Remove every stored message of ``conversation``."""
        conversation_tag = self._tag("conversation", _text("conversation", conversation))
        self._execute("DELETE FROM messages WHERE conversation_tag = ?", (conversation_tag,))

    def messages(
        self,
        conversation: str,
        *,
        limit: int = 50,
        newest_first: bool = True,
        before: MessageCursor | None = None,
        after: MessageCursor | None = None,
    ) -> list[StoredMessage]:
        """Return up to ``limit`` (1..1000) messages strictly between ``after`` and ``before``.

        Messages are ordered by ``(sent_at_ns, message_id)``, newest first by default. To page,
        pass the last message's :attr:`~StoredMessage.cursor` as ``before=`` when newest first,
        or as ``after=`` when oldest first; every message comes exactly once.
        """
        _check_limit(limit)
        for name, bound in (("before", before), ("after", after)):
            if bound is not None and not isinstance(bound, MessageCursor):
                raise TypeError(f"{name} must be a MessageCursor, got {type(bound).__name__}")
        conversation_tag = self._tag("conversation", _text("conversation", conversation))

        def in_window(position: MessageCursor) -> bool:
            return (after is None or position > after) and (before is None or position < before)

        # Message ids are sealed, so SQLite orders by time only and ties are ordered here: rows
        # that share the time of the page's starting cursor are read as a whole group, then the
        # next rows in time up to and including the whole group of the page's last time.
        start, end = (before, after) if newest_first else (after, before)
        beyond, within = ("<", ">=") if newest_first else (">", "<=")
        candidates: list[tuple[MessageCursor, _MessageRow]] = []
        where = ""
        params: tuple[object, ...] = ()
        if start is not None:
            tied = self._message_rows(
                conversation, conversation_tag, " AND sent_at_ns = ?", (start.sent_at_ns,)
            )
            candidates += self._positioned(conversation, tied, in_window)
            where, params = f" AND sent_at_ns {beyond} ?", (start.sent_at_ns,)
        if end is not None:
            where, params = f"{where} AND sent_at_ns {within} ?", (*params, end.sent_at_ns)
        if len(candidates) < limit:
            cutoff = self._execute(
                f"SELECT sent_at_ns FROM messages WHERE conversation_tag = ?{where}"
                f" ORDER BY sent_at_ns {'DESC' if newest_first else 'ASC'} LIMIT 1 OFFSET ?",
                (conversation_tag, *params, limit - len(candidates) - 1),
            ).fetchone()
            if cutoff is not None:
                where, params = f"{where} AND sent_at_ns {within} ?", (*params, cutoff[0])
            rows = self._message_rows(conversation, conversation_tag, where, params)
            candidates += self._positioned(conversation, rows, in_window)
        candidates.sort(key=lambda candidate: candidate[0], reverse=newest_first)
        return [
            self._message(conversation, position.message_id, row)
            for position, row in candidates[:limit]
        ]

    def _message_rows(
        self, conversation: str, conversation_tag: bytes, where: str, params: tuple[object, ...]
    ) -> list[_MessageRow]:
        rows: list[_MessageRow] = self._execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_tag = ?{where}",
            (conversation_tag, *params),
        ).fetchall()
        for _, sent_at_ns, sequence, _, _ in rows:
            if type(sent_at_ns) is not int or not (sequence is None or type(sequence) is int):
                raise StoreCorrupted(
                    f"a message in conversation {conversation!r} has a time or sequence that is"
                    f" not an integer: {sent_at_ns!r}, {sequence!r} (tampered)"
                )
        return rows

    def _positioned(
        self, conversation: str, rows: list[_MessageRow], keep: _PositionFilter
    ) -> list[tuple[MessageCursor, _MessageRow]]:
        positioned = []
        for row in rows:
            position = MessageCursor(row[1], self._open_message_id(conversation, row))
            if keep(position):
                positioned.append((position, row))
        return positioned

    def _open_message_id(self, conversation: str, row: _MessageRow) -> str:
        aad = _frame("messages.sealed_id", conversation, row[0])
        return self._open_text(aad, row[3], f"a message id in conversation {conversation!r}")

    def _message(self, conversation: str, message_id: str, row: _MessageRow) -> StoredMessage:
        _, sent_at_ns, sequence, _, sealed_record = row
        aad = _message_aad(conversation, message_id, sent_at_ns, sequence)
        what = f"the record of message {message_id!r} in conversation {conversation!r}"
        record = self._open(aad, sealed_record, what)
        return StoredMessage(conversation, message_id, sent_at_ns, sequence, record)
