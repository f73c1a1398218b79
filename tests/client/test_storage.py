"""The client's encrypted store (``veilpost.client.storage``).

Each rule of the store has a test that breaks exactly that rule: a wrong key, a value swapped
into another row, a flipped byte, a duplicate message id, a page size out of range, a key of the
wrong length. Tampering goes through a raw ``sqlite3`` connection to the closed file, as an
attacker with the file would. Paging is checked against a plain sorted list with hypothesis,
with many ties in ``sent_at_ns``. Also runs inside Pyodide (pure backend, in-memory file system).
"""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import BACKENDS, IN_PYODIDE

import veilpost
from veilpost.client import storage
from veilpost.client.storage import (
    MessageCursor,
    Store,
    StoreCorrupted,
    StoredMessage,
    StoreError,
    WrongKey,
    key_from_passphrase,
    new_key,
    parse_key,
)
from veilpost.crypto.backend import CryptoBackend
from veilpost.crypto.provider import CryptoProvider

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.sqlite"


@pytest.fixture
def provider(backend: CryptoBackend) -> CryptoProvider:
    """A provider on each available backend (the ``backend`` fixture of conftest.py)."""
    return CryptoProvider(backend)


def open_store(path: Path | str, key: bytes = KEY, **kwargs: CryptoProvider) -> Store:
    return Store.open(path, key, **kwargs)


def raw(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Run one statement on the file through plain sqlite3, as someone holding the file could."""
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute(sql, params).fetchall()
        db.commit()
    return rows


def flip_byte(path: Path, table: str, column: str, index: int = -1, where: str = "1") -> None:
    """Flip one bit of ``column`` in the only row of ``table`` (that matches ``where``)."""
    ((value,),) = raw(path, f"SELECT {column} FROM {table} WHERE {where}")
    assert isinstance(value, bytes)
    tampered = bytearray(value)
    tampered[index] ^= 0x01
    raw(path, f"UPDATE {table} SET {column} = ? WHERE {where}", (bytes(tampered),))


def swap_column(path: Path, table: str, column: str, key_column: str) -> None:
    """Exchange ``column`` between the two rows of ``table``."""
    (a_key, a), (b_key, b) = raw(path, f"SELECT {key_column}, {column} FROM {table}")
    raw(path, f"UPDATE {table} SET {column} = ? WHERE {key_column} = ?", (b, a_key))
    raw(path, f"UPDATE {table} SET {column} = ? WHERE {key_column} = ?", (a, b_key))


def add(store: Store, conversation: str, message_id: str, sent_at_ns: int, **kw: object) -> bool:
    record = kw.get("record", f"{conversation}/{message_id}".encode())
    sequence = kw.get("sequence")
    assert isinstance(record, bytes) and (sequence is None or isinstance(sequence, int))
    return store.add_message(
        conversation, message_id, sent_at_ns=sent_at_ns, sequence=sequence, record=record
    )


# -- keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_open_rejects_a_key_that_is_not_32_bytes(length: int) -> None:
    with pytest.raises(ValueError, match=f"32 bytes, got {length}"):
        Store.open(":memory:", bytes(length))


def test_open_rejects_a_key_that_is_not_bytes() -> None:
    with pytest.raises(TypeError, match="bytes"):
        Store.open(":memory:", KEY.hex())  # type: ignore[arg-type]


def test_new_key_is_32_fresh_random_bytes() -> None:
    keys = {new_key() for _ in range(8)}
    assert len(keys) == 8 and all(len(k) == 32 for k in keys)


@pytest.mark.parametrize(
    "text",
    [
        KEY.hex(),
        KEY.hex().upper(),
        f"  {KEY.hex()}\n",
        base64.b64encode(KEY).decode(),
        base64.b64encode(KEY).decode().rstrip("="),
        base64.urlsafe_b64encode(bytes(range(200, 232))).decode(),
    ],
)
def test_parse_key_reads_hex_and_base64(text: str) -> None:
    expected = bytes(range(200, 232)) if "-" in text or "_" in text else KEY
    assert parse_key(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        KEY.hex()[:-1],  # 63 hex digits
        KEY.hex() + "00",  # 33 bytes
        KEY.hex()[:-1] + "g",
        base64.b64encode(KEY[:31]).decode(),
        base64.b64encode(KEY + b"x").decode(),
        base64.b64encode(KEY).decode()[:-2] + "!=",
    ],
)
def test_parse_key_rejects_anything_else_without_echoing_it(text: str) -> None:
    with pytest.raises(ValueError, match="32 bytes") as info:
        parse_key(text)
    if len(text) > 8:
        assert text.strip() not in str(info.value)


# RFC 7914 §11 (PBKDF2-HMAC-SHA256) and a 200 000-iteration answer from OpenSSL's hashlib.
PBKDF2_VECTORS = [
    (
        b"passwd",
        b"salt",
        1,
        "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783",
    ),
    (
        b"password",
        b"salt",
        4096,
        "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a",
    ),
]


@pytest.mark.parametrize(("password", "salt", "iterations", "expected"), PBKDF2_VECTORS)
def test_pbkdf2_fallback_matches_known_answers(
    password: bytes, salt: bytes, iterations: int, expected: str
) -> None:
    """The fallback for a hashlib without ``pbkdf2_hmac`` (Pyodide) against RFC 7914."""
    derived = storage._pbkdf2_hmac_sha256(password, salt, iterations, len(expected) // 2)
    assert derived.hex() == expected


def test_key_from_passphrase_is_pbkdf2_sha256_with_200000_iterations() -> None:
    key = key_from_passphrase("correct horse battery staple", b"veilpost-test-salt")
    assert key.hex() == "6306cc601fd43eb41689271beeac55e997a1844b55c8fe3c5c2e1ac04e9601f5"


def test_key_from_passphrase_depends_on_passphrase_salt_and_iterations() -> None:
    salt = b"s" * 16
    base = key_from_passphrase("pass", salt, iterations=10)
    assert len(base) == 32
    assert key_from_passphrase("pass", salt, iterations=10) == base
    assert key_from_passphrase("Pass", salt, iterations=10) != base
    assert key_from_passphrase("pass", b"t" * 16, iterations=10) != base
    assert key_from_passphrase("pass", salt, iterations=11) != base
    if hasattr(hashlib, "pbkdf2_hmac"):  # both code paths agree where both exist
        assert storage._pbkdf2_hmac_sha256(b"pass", salt, 10, 32) == base


@pytest.mark.parametrize(
    ("passphrase", "salt", "iterations", "message"),
    [
        ("", b"s" * 16, 1, "passphrase"),
        ("pass", b"s" * 15, 1, "at least 16 bytes, got 15"),
        ("pass", b"s" * 16, 0, "positive integer, got 0"),
        ("pass", b"s" * 16, True, "positive integer, got True"),
    ],
)
def test_key_from_passphrase_rejects_weak_inputs(
    passphrase: str, salt: bytes, iterations: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        key_from_passphrase(passphrase, salt, iterations=iterations)


# -- opening, persistence, wrong key ---------------------------------------------------------


def test_reopen_with_the_same_key_returns_everything(path: Path, provider: CryptoProvider) -> None:
    with open_store(path, provider=provider) as store:
        store.put("profile", "name", b"alice")
        store.put("keys", "signature", b"\x00" * 32)
        add(store, "conv", "m1", 10, sequence=1)
        add(store, "conv", "m2", 20, sequence=None, record=b"")
    with open_store(path, provider=provider) as store:
        assert store.get("profile", "name") == b"alice"
        assert store.items("keys") == [("signature", b"\x00" * 32)]
        assert [(m.message_id, m.sequence, m.record) for m in store.messages("conv")] == [
            ("m2", None, b""),
            ("m1", 1, b"conv/m1"),
        ]


def test_a_file_written_by_one_backend_opens_with_the_other(path: Path) -> None:
    if len(BACKENDS) < 2:
        pytest.skip("only one crypto backend here")
    with open_store(path, provider=CryptoProvider("native")) as store:
        store.put("ns", "k", b"value")
        add(store, "c", "m", 1)
    with open_store(path, provider=CryptoProvider("pure")) as store:
        assert store.get("ns", "k") == b"value"
        message = store.get_message("c", "m")
        assert message is not None and message.record == b"c/m"


def test_another_key_raises_wrong_key_at_open(path: Path, provider: CryptoProvider) -> None:
    with open_store(path, provider=provider) as store:
        store.put("ns", "k", b"value")
    with pytest.raises(WrongKey, match="does not open"):
        open_store(path, OTHER_KEY, provider=provider)
    with open_store(path, provider=provider) as store:  # the failed open changed nothing
        assert store.get("ns", "k") == b"value"


def test_an_empty_store_also_refuses_another_key(path: Path) -> None:
    open_store(path).close()
    with pytest.raises(WrongKey):
        open_store(path, OTHER_KEY)


def test_a_changed_salt_reads_as_a_wrong_key(path: Path) -> None:
    open_store(path).close()
    flip_byte(path, "store_meta", "value", where="name = 'salt'")
    with pytest.raises(WrongKey):
        open_store(path)


def test_a_missing_key_check_value_is_corruption(path: Path) -> None:
    open_store(path).close()
    raw(path, "DELETE FROM store_meta WHERE name = 'key_check'")
    with pytest.raises(StoreCorrupted, match="key check"):
        open_store(path)


def test_a_file_that_is_not_sqlite_is_corrupted(path: Path) -> None:
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreCorrupted, match="not a readable SQLite"):
        open_store(path)


def test_another_sqlite_database_is_not_a_store(path: Path) -> None:
    raw(path, "CREATE TABLE notes (text TEXT)")
    with pytest.raises(StoreError, match=r"not a Veilpost store.*notes"):
        open_store(path)


def test_another_schema_version_is_refused(path: Path) -> None:
    open_store(path).close()
    raw(path, "UPDATE schema_version SET version = 2")
    with pytest.raises(StoreError, match="schema version 2"):
        open_store(path)


def test_the_file_uses_wal_and_foreign_keys(path: Path) -> None:
    with open_store(path) as store:
        db = store._db
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        assert db.execute("PRAGMA foreign_keys").fetchone() == (1,)
        assert db.execute("PRAGMA secure_delete").fetchone() == (1,)
    assert raw(path, "SELECT version FROM schema_version") == [(1,)]


def test_two_files_with_one_key_share_no_sub_key(tmp_path: Path) -> None:
    first, second = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    for file in (first, second):
        with open_store(file) as store:
            store.put("ns", "k", b"same")
    [(lookup_a, value_a)] = raw(first, "SELECT lookup, sealed_value FROM records")
    [(lookup_b, _)] = raw(second, "SELECT lookup, sealed_value FROM records")
    assert lookup_a != lookup_b
    raw(second, "UPDATE records SET sealed_value = ?", (value_a,))  # a value from another file
    with open_store(second) as store, pytest.raises(StoreCorrupted):
        store.get("ns", "k")


def test_a_closed_store_refuses_every_call() -> None:
    store = open_store(":memory:")
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.get("ns", "k")
    with pytest.raises(StoreError, match="closed"):
        store.messages("c")
    with pytest.raises(StoreError, match="closed"), store.transaction():
        pass


def test_sqlite_errors_come_out_as_store_errors() -> None:
    with open_store(":memory:") as store:
        store._db.execute("PRAGMA query_only = ON")  # every write now fails inside SQLite
        with pytest.raises(StoreError, match="readonly"):
            store.put("ns", "k", b"value")
        with pytest.raises(StoreError, match="readonly"), store.transaction():
            add(store, "c", "m", 1)
        store._db.execute("PRAGMA query_only = OFF")
        assert store.get("ns", "k") is None and store.count_messages("c") == 0


def test_a_store_opened_in_one_thread_is_usable_from_another(path: Path) -> None:
    if IN_PYODIDE:
        pytest.skip("no threads in Pyodide")
    from concurrent.futures import ThreadPoolExecutor

    with open_store(path) as store, ThreadPoolExecutor(1) as pool:
        pool.submit(store.put, "ns", "k", b"from a worker").result()
        assert store.get("ns", "k") == b"from a worker"


# -- key-value records -----------------------------------------------------------------------


def test_records_put_get_overwrite_delete(provider: CryptoProvider) -> None:
    with open_store(":memory:", provider=provider) as store:
        assert store.get("ns", "k") is None
        store.put("ns", "k", b"one")
        store.put("ns", "k", b"two")
        assert store.get("ns", "k") == b"two"
        assert store.get("other", "k") is None
        store.delete("ns", "k")
        store.delete("ns", "k")  # absent: no error
        assert store.get("ns", "k") is None
        assert store.items("ns") == []


def test_items_returns_clear_keys_of_one_namespace_sorted() -> None:
    with open_store(":memory:") as store:
        for key in ("b", "a", "ü", ""):
            store.put("ns", key, key.encode() + b"!")
        store.put("other", "z", b"z")
        assert store.items("ns") == [("", b"!"), ("a", b"a!"), ("b", b"b!"), ("ü", "ü!".encode())]


def test_namespace_and_key_boundaries_do_not_collide() -> None:
    with open_store(":memory:") as store:
        store.put("a", "bc", b"first")
        store.put("ab", "c", b"second")
        assert store.get("a", "bc") == b"first"
        assert store.get("ab", "c") == b"second"
        assert store.items("a") == [("bc", b"first")]


def test_record_arguments_are_type_checked() -> None:
    with open_store(":memory:") as store:
        with pytest.raises(TypeError, match="value must be bytes"):
            store.put("ns", "k", "text")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="key must be a str"):
            store.get("ns", b"k")  # type: ignore[arg-type]


NAMES = st.text(max_size=6)


@settings(max_examples=40, deadline=None)
@given(
    operations=st.lists(
        st.tuples(st.sampled_from(["a", "b", ""]), NAMES, st.none() | st.binary(max_size=24)),
        max_size=25,
    )
)
def test_records_behave_like_a_dict_per_namespace(
    operations: list[tuple[str, str, bytes | None]],
) -> None:
    model: dict[str, dict[str, bytes]] = {"a": {}, "b": {}, "": {}}
    with open_store(":memory:") as store:
        for namespace, key, value in operations:
            if value is None:
                store.delete(namespace, key)
                model[namespace].pop(key, None)
            else:
                store.put(namespace, key, value)
                model[namespace][key] = value
        for namespace, expected in model.items():
            assert store.items(namespace) == sorted(expected.items())
            for key, value in expected.items():
                assert store.get(namespace, key) == value


def test_a_tampered_value_raises_store_corrupted(path: Path, provider: CryptoProvider) -> None:
    with open_store(path, provider=provider) as store:
        store.put("ns", "k", b"value")
    flip_byte(path, "records", "sealed_value")
    with open_store(path, provider=provider) as store:
        with pytest.raises(StoreCorrupted, match="value of 'k' in namespace 'ns'"):
            store.get("ns", "k")
        with pytest.raises(StoreCorrupted):
            store.items("ns")


@pytest.mark.parametrize("index", [0, 11, 12, -17, -1])  # nonce, ciphertext, tag
def test_every_part_of_a_sealed_key_is_authenticated(path: Path, index: int) -> None:
    with open_store(path) as store:
        store.put("ns", "k", b"value")
    flip_byte(path, "records", "sealed_key", index)
    with open_store(path) as store, pytest.raises(StoreCorrupted, match="a key in namespace"):
        store.items("ns")


def test_a_truncated_value_raises_store_corrupted(path: Path) -> None:
    with open_store(path) as store:
        store.put("ns", "k", b"value")
    raw(path, "UPDATE records SET sealed_value = x'00'")
    with open_store(path) as store, pytest.raises(StoreCorrupted, match="not a sealed value"):
        store.get("ns", "k")


def test_values_swapped_between_rows_raise_store_corrupted(path: Path) -> None:
    with open_store(path) as store:
        store.put("ns", "k1", b"one")
        store.put("ns", "k2", b"two")
    swap_column(path, "records", "sealed_value", "lookup")
    with open_store(path) as store:
        for key in ("k1", "k2"):
            with pytest.raises(StoreCorrupted, match=f"value of '{key}'"):
                store.get("ns", key)


def test_keys_swapped_between_rows_raise_store_corrupted(path: Path) -> None:
    with open_store(path) as store:
        store.put("ns", "k1", b"one")
        store.put("ns", "k2", b"two")
    swap_column(path, "records", "sealed_key", "lookup")
    with open_store(path) as store, pytest.raises(StoreCorrupted, match="a key in"):
        store.items("ns")


def test_a_value_moved_to_the_same_key_of_another_namespace_is_rejected(path: Path) -> None:
    with open_store(path) as store:
        store.put("ns1", "k", b"one")
        store.put("ns2", "k", b"two")
    swap_column(path, "records", "sealed_value", "lookup")
    with open_store(path) as store, pytest.raises(StoreCorrupted):
        store.get("ns1", "k")


def test_a_row_moved_to_another_namespace_is_rejected(path: Path) -> None:
    with open_store(path) as store:
        store.put("ns1", "k", b"one")
        store.put("ns2", "other", b"two")
    swap_column(path, "records", "namespace_tag", "lookup")
    with open_store(path) as store, pytest.raises(StoreCorrupted):
        store.items("ns1")


# -- message history -------------------------------------------------------------------------


def test_messages_round_trip_and_count(provider: CryptoProvider) -> None:
    with open_store(":memory:", provider=provider) as store:
        assert add(store, "c", "m1", 100, sequence=7, record=b"hello")
        message = store.get_message("c", "m1")
        assert message == StoredMessage("c", "m1", 100, 7, b"hello")
        assert message.cursor == MessageCursor(100, "m1")
        assert store.get_message("c", "m2") is None
        assert store.get_message("other", "m1") is None
        assert store.count_messages("c") == 1
        assert store.count_messages("other") == 0


def test_a_duplicate_message_id_changes_nothing() -> None:
    with open_store(":memory:") as store:
        assert add(store, "c", "m1", 100, sequence=1, record=b"first")
        assert not add(store, "c", "m1", 200, sequence=2, record=b"second")
        assert store.get_message("c", "m1") == StoredMessage("c", "m1", 100, 1, b"first")
        assert store.count_messages("c") == 1
        assert add(store, "other", "m1", 100)  # the same id in another conversation is new


def test_update_message_replaces_only_the_record() -> None:
    with open_store(":memory:") as store:
        add(store, "c", "m1", 100, sequence=3, record=b"old")
        store.update_message("c", "m1", b"new")
        assert store.get_message("c", "m1") == StoredMessage("c", "m1", 100, 3, b"new")


def test_update_of_an_absent_message_raises_key_error() -> None:
    with open_store(":memory:") as store:
        add(store, "c", "m1", 100)
        with pytest.raises(KeyError, match="m2"):
            store.update_message("c", "m2", b"x")
        with pytest.raises(KeyError):
            store.update_message("other", "m1", b"x")
        assert store.count_messages("other") == 0


def test_delete_conversation_removes_only_that_conversation() -> None:
    with open_store(":memory:") as store:
        for i in range(3):
            add(store, "gone", f"m{i}", i)
            add(store, "kept", f"m{i}", i)
        store.delete_conversation("gone")
        store.delete_conversation("never existed")
        assert store.count_messages("gone") == 0 and store.messages("gone") == []
        assert store.count_messages("kept") == 3


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("sent_at_ns", 2**63, ValueError),
        ("sent_at_ns", -(2**63) - 1, ValueError),
        ("sent_at_ns", 1.5, TypeError),
        ("sequence", 2**64, ValueError),
        ("sequence", "1", TypeError),
    ],
)
def test_message_times_and_sequences_are_64_bit_integers(
    field: str, value: object, error: type[Exception]
) -> None:
    arguments: dict[str, object] = {"sent_at_ns": 1, "sequence": 1, "record": b"r"}
    arguments[field] = value
    with open_store(":memory:") as store:
        with pytest.raises(error, match=field):
            store.add_message("c", "m", **arguments)  # type: ignore[arg-type]
        assert store.count_messages("c") == 0


@pytest.mark.parametrize("limit", [0, -1, 1001, True])
def test_limit_out_of_range_raises_value_error(limit: int) -> None:
    with open_store(":memory:") as store, pytest.raises(ValueError, match=r"1\.\.1000"):
        store.messages("c", limit=limit)


def test_limit_bounds_are_accepted() -> None:
    with open_store(":memory:") as store:
        for i in range(3):
            add(store, "c", f"m{i}", i)
        assert len(store.messages("c", limit=1)) == 1
        assert len(store.messages("c", limit=1000)) == 3


def test_cursors_must_be_message_cursors() -> None:
    with open_store(":memory:") as store, pytest.raises(TypeError, match="before"):
        store.messages("c", before=(1, "m"))  # type: ignore[arg-type]


def test_order_is_by_time_then_message_id() -> None:
    with open_store(":memory:") as store:
        for message_id, sent_at_ns in [("b", 5), ("a", 5), ("z", 1), ("c", 9), ("aa", 5)]:
            add(store, "c", message_id, sent_at_ns)
        oldest_first = [m.message_id for m in store.messages("c", newest_first=False)]
        assert oldest_first == ["z", "a", "aa", "b", "c"]
        assert [m.message_id for m in store.messages("c")] == oldest_first[::-1]


def test_paging_through_a_tie_larger_than_a_page() -> None:
    with open_store(":memory:") as store:
        ids = [f"m{i:02}" for i in range(12)]
        for message_id in ids:
            add(store, "c", message_id, 42)
        add(store, "c", "early", 1)
        add(store, "c", "late", 99)
        page = store.messages("c", limit=5, newest_first=False, after=MessageCursor(42, "m03"))
        assert [m.message_id for m in page] == ids[4:9]
        page = store.messages("c", limit=5, before=MessageCursor(42, "m03"))
        assert [m.message_id for m in page] == ["m02", "m01", "m00", "early"]


def collect_pages(store: Store, limit: int, newest_first: bool) -> list[StoredMessage]:
    pages: list[StoredMessage] = []
    cursor: MessageCursor | None = None
    while True:
        if newest_first:
            page = store.messages("c", limit=limit, newest_first=True, before=cursor)
        else:
            page = store.messages("c", limit=limit, newest_first=False, after=cursor)
        assert len(page) <= limit
        if not page:
            return pages
        pages += page
        cursor = page[-1].cursor


MESSAGES = st.lists(
    st.tuples(st.text("abc", min_size=1, max_size=3), st.integers(0, 4)),
    unique_by=lambda message: message[0],
    max_size=30,
)


@settings(max_examples=40, deadline=None)
@given(messages=MESSAGES, limit=st.integers(1, 7), newest_first=st.booleans())
def test_pages_cover_every_message_exactly_once_in_order(
    messages: list[tuple[str, int]], limit: int, newest_first: bool
) -> None:
    expected = sorted((sent_at_ns, message_id) for message_id, sent_at_ns in messages)
    if newest_first:
        expected.reverse()
    with open_store(":memory:") as store:
        for message_id, sent_at_ns in messages:
            add(store, "c", message_id, sent_at_ns)
        add(store, "elsewhere", "a", 2)
        pages = collect_pages(store, limit, newest_first)
    assert [(m.sent_at_ns, m.message_id) for m in pages] == expected
    assert all(m.record == f"c/{m.message_id}".encode() for m in pages)


CURSORS = st.none() | st.builds(MessageCursor, st.integers(-1, 5), st.text("abc", max_size=3))


@settings(max_examples=40, deadline=None)
@given(
    messages=MESSAGES,
    limit=st.integers(1, 7),
    newest_first=st.booleans(),
    before=CURSORS,
    after=CURSORS,
)
def test_a_page_is_the_first_messages_strictly_between_the_cursors(
    messages: list[tuple[str, int]],
    limit: int,
    newest_first: bool,
    before: MessageCursor | None,
    after: MessageCursor | None,
) -> None:
    positions = sorted(MessageCursor(sent_at_ns, mid) for mid, sent_at_ns in messages)
    window = [
        p for p in positions if (after is None or p > after) and (before is None or p < before)
    ]
    if newest_first:
        window.reverse()
    with open_store(":memory:") as store:
        for message_id, sent_at_ns in messages:
            add(store, "c", message_id, sent_at_ns)
        page = store.messages(
            "c", limit=limit, newest_first=newest_first, before=before, after=after
        )
    assert [m.cursor for m in page] == window[:limit]


def test_a_tampered_message_record_raises_store_corrupted(path: Path) -> None:
    with open_store(path) as store:
        add(store, "c", "m1", 1)
    flip_byte(path, "messages", "sealed_record")
    with open_store(path) as store:
        with pytest.raises(StoreCorrupted, match="record of message 'm1' in conversation 'c'"):
            store.get_message("c", "m1")
        with pytest.raises(StoreCorrupted):
            store.messages("c")
        assert store.count_messages("c") == 1


def test_a_tampered_message_id_raises_store_corrupted(path: Path) -> None:
    with open_store(path) as store:
        add(store, "c", "m1", 1)
    flip_byte(path, "messages", "sealed_id", 20)
    with open_store(path) as store:
        with pytest.raises(StoreCorrupted, match="message id in conversation 'c'"):
            store.messages("c")
        with pytest.raises(StoreCorrupted, match="message id"):
            store.get_message("c", "m1")


@pytest.mark.parametrize(
    ("column", "value"), [("sent_at_ns", 2), ("sequence", 8), ("sequence", None)]
)
def test_a_changed_time_or_sequence_raises_store_corrupted(
    path: Path, column: str, value: int | None
) -> None:
    with open_store(path) as store:
        add(store, "c", "m1", 1, sequence=7)
    raw(path, f"UPDATE messages SET {column} = ?", (value,))
    with open_store(path) as store:
        with pytest.raises(StoreCorrupted, match="record of message 'm1'"):
            store.get_message("c", "m1")
        with pytest.raises(StoreCorrupted):
            store.messages("c")


def test_a_time_that_is_not_an_integer_raises_store_corrupted(path: Path) -> None:
    with open_store(path) as store:
        add(store, "c", "m1", 1)
    raw(path, "UPDATE messages SET sent_at_ns = 'soon'")
    with open_store(path) as store, pytest.raises(StoreCorrupted, match="not an integer"):
        store.messages("c")


@pytest.mark.parametrize("column", ["sealed_record", "sealed_id"])
def test_message_fields_swapped_between_rows_raise_store_corrupted(path: Path, column: str) -> None:
    with open_store(path) as store:
        add(store, "c", "m1", 1)
        add(store, "c", "m2", 1)
    swap_column(path, "messages", column, "message_tag")
    with open_store(path) as store, pytest.raises(StoreCorrupted):
        store.messages("c")


def test_a_record_moved_to_the_same_message_id_in_another_conversation_is_rejected(
    path: Path,
) -> None:
    with open_store(path) as store:
        add(store, "c1", "m", 1)
        add(store, "c2", "m", 1)
    swap_column(path, "messages", "sealed_record", "conversation_tag")
    with open_store(path) as store, pytest.raises(StoreCorrupted):
        store.get_message("c1", "m")


def test_a_message_moved_to_another_conversation_is_rejected(path: Path) -> None:
    with open_store(path) as store:
        add(store, "c1", "m1", 1)
        add(store, "c2", "m2", 1)
    swap_column(path, "messages", "conversation_tag", "message_tag")
    with open_store(path) as store, pytest.raises(StoreCorrupted):
        store.messages("c1")


# -- transactions ----------------------------------------------------------------------------


class Crash(BaseException):
    """Stands for a crash or ``KeyboardInterrupt`` in the middle of a transaction."""


def write_everything(store: Store, tag: bytes) -> None:
    store.put("ns", "k", tag)
    store.put("ns", "k2", tag)
    add(store, "c", tag.decode(), 1)
    store.delete_conversation("old")


def test_an_exception_inside_a_transaction_writes_nothing(path: Path) -> None:
    with open_store(path) as store:
        add(store, "old", "m", 0)
        store.put("ns", "k", b"before")
        with pytest.raises(Crash), store.transaction():
            write_everything(store, b"inside")
            assert store.get("ns", "k") == b"inside"  # visible inside the transaction
            raise Crash
        assert store.get("ns", "k") == b"before"
        assert store.get("ns", "k2") is None
        assert store.count_messages("c") == 0 and store.count_messages("old") == 1
    with open_store(path) as store:
        assert store.items("ns") == [("k", b"before")]


def test_a_transaction_commits_everything_together(path: Path) -> None:
    with open_store(path) as store, store.transaction():
        write_everything(store, b"inside")
    with open_store(path) as store:
        assert store.items("ns") == [("k", b"inside"), ("k2", b"inside")]
        assert store.count_messages("c") == 1


def test_an_inner_transaction_rolls_back_alone(path: Path) -> None:
    with open_store(path) as store:
        with store.transaction():
            store.put("ns", "outer", b"1")
            with pytest.raises(ValueError), store.transaction():
                store.put("ns", "inner", b"2")
                raise ValueError("inner fails")
            with store.transaction():
                store.put("ns", "second inner", b"3")
        assert [key for key, _ in store.items("ns")] == ["outer", "second inner"]


def test_an_outer_failure_undoes_committed_inner_transactions() -> None:
    with open_store(":memory:") as store:
        with pytest.raises(Crash), store.transaction():
            with store.transaction():
                store.put("ns", "inner", b"2")
            raise Crash
        assert store.items("ns") == []


def test_close_inside_a_transaction_is_refused() -> None:
    store = open_store(":memory:")
    with pytest.raises(StoreError, match="inside a transaction"), store.transaction():
        store.close()
    store.close()


def test_uncommitted_writes_are_invisible_to_another_connection(path: Path) -> None:
    with open_store(path) as writer:
        writer.put("ns", "k", b"committed")
        with writer.transaction():
            writer.put("ns", "k", b"pending")
            with open_store(path) as reader:  # opening must not wait for the writer
                assert reader.get("ns", "k") == b"committed"
        with open_store(path) as reader:
            assert reader.get("ns", "k") == b"pending"


CRASHING_WRITER = """
import os, sys
from veilpost.client.storage import Store
store = Store.open(sys.argv[1], bytes.fromhex(sys.argv[2]))
with store.transaction():
    store.put("ns", "k", b"uncommitted")
    store.add_message("c", "m2", sent_at_ns=2, sequence=2, record=b"uncommitted")
    os._exit(3)  # the process dies: no rollback, no close
"""


def test_a_process_killed_mid_transaction_leaves_the_previous_state(path: Path) -> None:
    if IN_PYODIDE:
        pytest.skip("no subprocesses in Pyodide")
    with open_store(path) as store:
        store.put("ns", "k", b"committed")
        add(store, "c", "m1", 1)
    source = str(Path(veilpost.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(path), KEY.hex()], env=env, check=False
    )
    assert result.returncode == 3
    with open_store(path) as store:
        assert store.get("ns", "k") == b"committed"
        assert [m.message_id for m in store.messages("c")] == ["m1"]


# -- what the file reveals -------------------------------------------------------------------

CANARIES = {
    "namespace": "CANARYnamespace",
    "key": "CANARYkey",
    "value": "CANARYvalue",
    "conversation": "CANARYconversation",
    "message_id": "CANARYmessage",
    "record": "CANARYrecord",
}


def file_bytes(path: Path) -> bytes:
    """The database and its WAL and shared-memory files, as a disk image would hold them."""
    return b"".join(p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name))


def leaked(data: bytes) -> list[str]:
    found = []
    for name, canary in CANARIES.items():
        forms = (canary.encode(), canary.encode("utf-16-le"), canary.encode().hex().encode())
        if any(form in data for form in forms):
            found.append(name)
    return found


def test_the_canary_search_finds_clear_text(path: Path) -> None:
    """Control: the search below would fail if the store wrote its names or values in clear."""
    raw(path, "CREATE TABLE leak (a TEXT, b BLOB)")
    raw(path, "INSERT INTO leak VALUES (?, ?)", (CANARIES["key"], CANARIES["value"].encode()))
    assert leaked(file_bytes(path)) == ["key", "value"]


def test_the_file_holds_no_name_or_content_in_clear(path: Path) -> None:
    c = CANARIES
    with open_store(path) as store:
        store.put(c["namespace"], c["key"], c["value"].encode())
        store.add_message(
            c["conversation"],
            c["message_id"],
            sent_at_ns=1,
            sequence=1,
            record=c["record"].encode(),
        )
        store.update_message(c["conversation"], c["message_id"], (c["record"] * 2).encode())
        assert leaked(file_bytes(path)) == []  # with the WAL still open
    assert leaked(file_bytes(path)) == []
    with open_store(path) as store:  # and yet it is all there
        assert store.items(c["namespace"]) == [(c["key"], c["value"].encode())]
        [message] = store.messages(c["conversation"])
        assert (message.message_id, message.record) == (c["message_id"], (c["record"] * 2).encode())


def test_deleted_ciphertext_is_erased_from_the_file(path: Path) -> None:
    with open_store(path) as store:
        store.put("ns", "k", os.urandom(64))
        add(store, "c", "m", 1, record=os.urandom(64))
    [(sealed_value,)] = raw(path, "SELECT sealed_value FROM records")
    [(sealed_record,)] = raw(path, "SELECT sealed_record FROM messages")
    assert isinstance(sealed_value, bytes) and isinstance(sealed_record, bytes)
    assert sealed_value in file_bytes(path) and sealed_record in file_bytes(path)
    with open_store(path) as store:
        store.delete("ns", "k")
        store.delete_conversation("c")
    data = file_bytes(path)
    assert sealed_value not in data and sealed_record not in data


def test_time_and_sequence_are_the_only_clear_message_fields(path: Path) -> None:
    with open_store(path) as store:
        add(store, "c", "m", 123456789, sequence=42)
    [(conversation_tag, message_tag, sent_at_ns, sequence)] = raw(
        path, "SELECT conversation_tag, message_tag, sent_at_ns, sequence FROM messages"
    )
    assert (sent_at_ns, sequence) == (123456789, 42)
    assert isinstance(conversation_tag, bytes) and len(conversation_tag) == 32
    assert isinstance(message_tag, bytes) and len(message_tag) == 32
