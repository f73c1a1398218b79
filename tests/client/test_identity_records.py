"""Identity records, their chain and address bindings (``veilpost.client.identity``).

Each rule of :func:`~veilpost.client.identity.verify_record_chain` and of the record's strict
wire form has a test that breaks exactly that rule and checks the error's ``check``: the
genesis signer, the signature (and what it covers: inbox, version, record bytes), the version
sequence, the signer being listed in the previous version, the installation list, the address
bindings (EIP-191, with fixed test wallets), and the credential that names an inbox. The decoder
is fuzzed with hypothesis: only :class:`IdentityError` may escape ``IdentityRecord.from_bytes``.

Standard library, pytest, hypothesis and ``veilpost`` only: this file also runs inside Pyodide.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import BACKENDS

from veilpost.client.errors import IdentityError
from veilpost.client.identity import (
    MAX_ADDRESSES,
    MAX_INSTALLATIONS,
    AddressBinding,
    IdentityRecord,
    InstallationKey,
    SignedRecord,
    credential_for,
    inbox_of_credential,
    verify_record_chain,
)
from veilpost.codec import Writer
from veilpost.crypto import CryptoProvider, ethereum
from veilpost.crypto.backend import CryptoBackend
from veilpost.mls.credential import Credential
from veilpost.protocol import address_binding_text, identity_record_message, installation_id

FAST = BACKENDS[0]
PROVIDER = CryptoProvider(FAST)

# Fixed test wallets: the web3.js documentation's account, and two keys from a hash.
WALLET_A = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
WALLET_A_ADDRESS = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
WALLET_B = hashlib.sha256(b"veilpost test wallet b").digest()
WALLET_C = hashlib.sha256(b"veilpost test wallet c").digest()
ISSUED = 1_750_000_000  # the Unix time the test bindings are signed at


def bind(wallet: bytes, inbox: str | None = None, issued_at: int = ISSUED) -> AddressBinding:
    """``wallet``'s binding to ``inbox`` (default: alice's), signed at ``issued_at``."""
    return AddressBinding.create(wallet, ALICE if inbox is None else inbox, issued_at)


def key(name: str, provider: CryptoProvider = PROVIDER) -> InstallationKey:
    """A fixed installation key per name."""
    return InstallationKey(
        hashlib.sha256(b"installation " + name.encode()).digest(), provider=provider
    )


def sign(
    signer: InstallationKey,
    record: IdentityRecord | bytes,
    *,
    inbox: str | None = None,
    version: int | None = None,
) -> SignedRecord:
    """``record`` signed by ``signer`` as the relay would serve it; ``inbox`` and ``version``
    change what the signature covers (not what the relay says)."""
    data = record if isinstance(record, bytes) else record.to_bytes()
    decoded = IdentityRecord.from_bytes(data)
    message = identity_record_message(
        decoded.inbox_id if inbox is None else inbox,
        decoded.version if version is None else version,
        data,
    )
    return SignedRecord(decoded.version, data, signer.sign(message), signer.public_key)


def check(exc_info: pytest.ExceptionInfo[IdentityError], name: str) -> None:
    error = exc_info.value
    assert getattr(error, "check", None) == name, (getattr(error, "check", None), str(error))
    assert f"[{name}]" in str(error)


# alice's inbox: her first installation a1 names it; a2, a3 are her later devices.
A1, A2, A3 = key("a1"), key("a2"), key("a3")
ALICE = A1.installation_id
MALLORY = key("mallory")
V1 = IdentityRecord.genesis(A1)
V2 = V1.successor(add=[A2.public_key])
V3 = V2.successor(add=[A3.public_key], remove=[A1.public_key])


def alice_chain() -> list[SignedRecord]:
    """v1 by a1; v2 (adds a2) by a1; v3 (adds a3, removes a1) by a2."""
    return [sign(A1, V1), sign(A1, V2), sign(A2, V3)]


# -- the record's wire form ------------------------------------------------------------------------


def test_round_trip_with_installations_and_addresses() -> None:
    record = IdentityRecord(
        ALICE,
        7,
        (A1.public_key, A2.public_key),
        (bind(WALLET_A), bind(WALLET_B, issued_at=2**64 - 1)),
    )
    data = record.to_bytes()
    assert data[:6] == b"VPIR\x00\x01"
    assert IdentityRecord.from_bytes(data) == record
    assert IdentityRecord.from_bytes(data).to_bytes() == data
    assert record.address_list()[0] == WALLET_A_ADDRESS
    assert record.installation_ids() == {A1.installation_id, A2.installation_id}
    assert IdentityRecord.from_bytes(V1.to_bytes()) == V1


def test_decode_normalizes_addresses_to_eip55() -> None:
    binding = bind(WALLET_A)
    lower = IdentityRecord(
        ALICE, 1, (A1.public_key,), (replace(binding, address=binding.address.lower()),)
    )
    assert IdentityRecord.from_bytes(lower.to_bytes()).address_list() == [WALLET_A_ADDRESS]


def record_bytes(*, magic: bytes = b"VPIR", fmt: int = 1, inbox: bytes = ALICE.encode()) -> bytes:
    writer = Writer()
    writer.fixed(magic)
    writer.uint16(fmt)
    writer.opaque(inbox)
    writer.uint64(1)
    writer.vector([A1.public_key], Writer.opaque)
    writer.struct_vector([])
    return writer.getvalue()


def test_the_hand_built_record_decodes() -> None:
    assert IdentityRecord.from_bytes(record_bytes()) == V1


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (record_bytes(magic=b"VPIS"), "bad magic"),
        (record_bytes(magic=b"\x00\x00\x00\x00"), "bad magic"),
        (record_bytes(fmt=0), "format"),
        (record_bytes(fmt=2), "format"),
        (record_bytes(inbox="é".encode()), "ascii"),
        (V1.to_bytes() + b"\x00", ""),
        (V1.to_bytes()[:-1], ""),
        (b"", ""),
        (b"VPIR", ""),
    ],
    ids=[
        "magic",
        "zero-magic",
        "format-0",
        "format-2",
        "non-ascii-inbox",
        "trailing",
        "truncated",
        "empty",
        "magic-only",
    ],
)
def test_strict_decode(data: bytes, words: str) -> None:
    with pytest.raises(IdentityError) as info:
        IdentityRecord.from_bytes(data)
    check(info, "record.decode")
    assert words in str(info.value)


def binding_bytes(address: bytes, signature: bytes, issued_at: int = ISSUED) -> bytes:
    writer = Writer()
    writer.fixed(record_bytes()[:-1])  # everything but the empty address vector
    inner = Writer()
    inner.opaque(address)
    inner.opaque(signature)
    inner.uint64(issued_at)
    writer.opaque(inner.getvalue())
    return writer.getvalue()


@pytest.mark.parametrize(
    ("address", "signature"),
    [(b"\x11" * 19, b"\x22" * 65), (b"\x11" * 20, b"\x22" * 64), (b"\x11" * 21, b"\x22" * 65)],
)
def test_address_binding_field_lengths(address: bytes, signature: bytes) -> None:
    with pytest.raises(IdentityError) as info:
        IdentityRecord.from_bytes(binding_bytes(address, signature))
    check(info, "record.decode")


def test_binding_bytes_helper_is_right() -> None:
    binding = bind(WALLET_A)
    data = binding_bytes(bytes.fromhex(binding.address[2:]), binding.signature)
    assert IdentityRecord.from_bytes(data).addresses == (binding,)


FULL = IdentityRecord(ALICE, 3, (A1.public_key, A2.public_key), (bind(WALLET_A),)).to_bytes()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_decode_fuzz_random_bytes(data: bytes) -> None:
    try:
        record = IdentityRecord.from_bytes(data)
    except IdentityError as exc:
        assert getattr(exc, "check", None) == "record.decode"
    else:
        assert record.to_bytes() == data  # whatever decodes is canonical


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.integers(0, len(FULL) - 1), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(0, len(FULL)),
    st.binary(max_size=8),
)
def test_decode_fuzz_mutations(edits: list[tuple[int, int]], cut: int, tail: bytes) -> None:
    data = bytearray(FULL)
    for offset, value in edits:
        data[offset] = value
    mutated = bytes(data[:cut]) + tail
    try:
        record = IdentityRecord.from_bytes(mutated)
    except IdentityError as exc:
        assert getattr(exc, "check", None) == "record.decode"
    else:
        assert record.to_bytes() == mutated


# -- the chain -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_a_valid_chain(backend_name: str) -> None:
    provider = CryptoProvider(backend_name)
    assert verify_record_chain(ALICE, alice_chain(), provider=provider) == V3
    assert verify_record_chain(ALICE, alice_chain()[:1], provider=provider) == V1
    assert V3.installations == (A2.public_key, A3.public_key)


def test_a_valid_chain_on_the_backend_fixture(backend: CryptoBackend) -> None:
    assert verify_record_chain(ALICE, alice_chain(), provider=CryptoProvider(backend)) == V3


def test_no_record_at_all() -> None:
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [])
    check(info, "record.missing")


def test_continuing_from_a_trusted_record() -> None:
    chain = alice_chain()
    assert verify_record_chain(ALICE, chain[1:], V1) == V3
    assert verify_record_chain(ALICE, chain[2:], V2) == V3
    assert verify_record_chain(ALICE, [], V3) == V3  # nothing new: the trusted record stands


def test_continuing_from_a_trusted_record_at_the_wrong_version() -> None:
    chain = alice_chain()
    for versions, trusted in [(chain, V1), (chain[2:], V1), (chain[1:], V2)]:
        with pytest.raises(IdentityError) as info:
            verify_record_chain(ALICE, versions, trusted)
        check(info, "record.sequence")


def test_continuing_needs_a_signer_listed_in_the_trusted_record() -> None:
    # v3 is signed by a2; a trusted v2' that does not list a2 makes it unacceptable.
    other_v2 = V1.successor(add=[MALLORY.public_key])
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [sign(A2, V3)], other_v2)
    check(info, "record.signer_not_listed")


def test_genesis_signed_by_a_key_whose_id_is_not_the_inbox() -> None:
    # a2 is listed, but the inbox id is a1's installation id.
    record = IdentityRecord(ALICE, 1, (A1.public_key, A2.public_key))
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [sign(A2, record)])
    check(info, "record.genesis_signer")


def test_genesis_of_mallorys_own_inbox_does_not_pass_for_alice() -> None:
    mallory_record = IdentityRecord(ALICE, 1, (MALLORY.public_key,))
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [sign(MALLORY, mallory_record)])
    check(info, "record.genesis_signer")


def test_genesis_not_listing_its_signer() -> None:
    record = IdentityRecord(ALICE, 1, (A2.public_key,))
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [sign(A1, record)])
    check(info, "record.genesis_signer")


def test_bad_signature() -> None:
    good = sign(A1, V1)
    flipped = bytes([good.signature[0] ^ 1]) + good.signature[1:]
    for signed in [
        replace(good, signature=flipped),
        replace(good, signature=b""),
        replace(good, signature=good.signature[:-1]),
        replace(good, signature=bytes(64)),
    ]:
        with pytest.raises(IdentityError) as info:
            verify_record_chain(ALICE, [signed])
        check(info, "record.signature")


def test_signer_key_of_the_wrong_length_is_a_bad_signature() -> None:
    good = sign(A1, V1)
    for signer_key in [b"", A1.public_key[:31], A1.public_key + b"\x00"]:
        with pytest.raises(IdentityError) as info:
            verify_record_chain(ALICE, [replace(good, signer_key=signer_key)])
        check(info, "record.signature")


def test_signature_by_another_key_than_the_one_named() -> None:
    good = sign(A1, V1)
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [replace(good, signer_key=A2.public_key)])
    check(info, "record.signature")


def test_signature_over_another_version() -> None:
    # The bytes say version 1 and the relay says 1, but a1 signed them as version 2.
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [sign(A1, V1, version=2)])
    check(info, "record.signature")


def test_signature_over_another_inbox() -> None:
    bob = key("b1")
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [sign(A1, V1, inbox=bob.installation_id)])
    check(info, "record.signature")


def test_signature_over_other_record_bytes() -> None:
    # a1's signature of v2, attached to different v2 bytes (mallory added instead of a2).
    good = sign(A1, V2)
    forged = V1.successor(add=[MALLORY.public_key]).to_bytes()
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [sign(A1, V1), replace(good, record=forged)])
    check(info, "record.signature")


def test_record_for_another_inbox() -> None:
    # bob's genuine genesis served as alice's: the record names bob.
    bob = key("b1")
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [sign(bob, IdentityRecord.genesis(bob))])
    check(info, "record.inbox")


def test_record_version_differs_from_the_relays() -> None:
    # The relay serves v2's bytes as version 1 (signed as version 1).
    data = V2.to_bytes()
    signed = SignedRecord(1, data, A1.sign(identity_record_message(ALICE, 1, data)), A1.public_key)
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [signed])
    check(info, "record.version")


def test_version_gap() -> None:
    chain = alice_chain()
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [chain[0], chain[2]])
    check(info, "record.sequence")


def test_version_repeated() -> None:
    chain = alice_chain()
    for versions in [[chain[0], chain[0]], [chain[0], chain[1], chain[1]]]:
        with pytest.raises(IdentityError) as info:
            verify_record_chain(ALICE, versions)
        check(info, "record.sequence")


def test_chain_not_starting_at_version_1() -> None:
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, alice_chain()[1:])
    check(info, "record.sequence")
    v0 = IdentityRecord(ALICE, 0, (A1.public_key,))
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [sign(A1, v0)])
    check(info, "record.sequence")


def test_out_of_order_versions() -> None:
    chain = alice_chain()
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [chain[1], chain[0]])
    check(info, "record.sequence")


def test_later_version_signed_by_an_unlisted_key() -> None:
    # a2 is listed only from v2 on, so it cannot sign v2 itself.
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [sign(A1, V1), sign(A2, V2)])
    check(info, "record.signer_not_listed")
    # mallory adds herself.
    hijack = V1.successor(add=[MALLORY.public_key])
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [sign(A1, V1), sign(MALLORY, hijack)])
    check(info, "record.signer_not_listed")


def test_a_key_removed_in_v2_may_sign_v2() -> None:
    # The signer must be listed in the PREVIOUS version: a device may sign its own removal.
    v2 = V1.successor(add=[A2.public_key], remove=[A1.public_key])
    assert not v2.lists(A1.public_key)
    assert verify_record_chain(ALICE, [sign(A1, V1), sign(A1, v2)]) == v2


def test_a_key_removed_in_v2_may_not_sign_v3() -> None:
    chain = alice_chain()  # v3 removes a1
    v4 = V3.successor(add=[MALLORY.public_key])
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [*chain, sign(A1, v4)])
    check(info, "record.signer_not_listed")
    assert verify_record_chain(ALICE, [*chain, sign(A3, v4)]) == v4


def test_the_first_installation_may_be_removed_and_the_inbox_lives_on() -> None:
    v4 = V3.successor(add=[MALLORY.public_key])
    result = verify_record_chain(ALICE, [*alice_chain(), sign(A3, v4)])
    assert result.inbox_id == ALICE and not result.lists(A1.public_key)


def test_empty_installations() -> None:
    for signed in [
        [sign(A1, IdentityRecord(ALICE, 1, ()))],
        [sign(A1, V1), sign(A1, V1.successor(remove=[A1.public_key]))],
    ]:
        with pytest.raises(IdentityError) as info:
            verify_record_chain(ALICE, signed)
        check(info, "record.installations")


def test_too_many_installations() -> None:
    keys = [A1.public_key] + [hashlib.sha256(bytes([i])).digest() for i in range(MAX_INSTALLATIONS)]
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [sign(A1, IdentityRecord(ALICE, 1, tuple(keys)))])
    check(info, "record.installations")
    at_limit = IdentityRecord(ALICE, 1, tuple(keys[:MAX_INSTALLATIONS]))
    assert verify_record_chain(ALICE, [sign(A1, at_limit)]) == at_limit


def test_duplicate_installation_keys() -> None:
    record = IdentityRecord(ALICE, 1, (A1.public_key, A2.public_key, A1.public_key))
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [sign(A1, record)])
    check(info, "record.installations")


@pytest.mark.parametrize("length", [0, 1, 31, 33, 64])
def test_installation_key_of_the_wrong_length(length: int) -> None:
    record = IdentityRecord(ALICE, 1, (A1.public_key, b"\x07" * length))
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [sign(A1, record)])
    check(info, "record.installations")


def test_successor_adds_and_removes() -> None:
    v2 = V1.successor(add=[A2.public_key, A1.public_key])  # a1 is listed already
    assert v2.installations == (A1.public_key, A2.public_key) and v2.version == 2
    v3 = v2.successor(add=[A3.public_key], remove=[A3.public_key, A1.public_key])
    assert v3.installations == (A2.public_key,)  # removal wins over an add of the same key
    assert verify_record_chain(ALICE, [sign(A1, V1), sign(A1, v2), sign(A2, v3)]) == v3


def test_successor_adds_a_key_given_twice_once() -> None:
    v2 = V1.successor(add=[A2.public_key, A2.public_key])
    assert v2.installations == (A1.public_key, A2.public_key)


# -- address bindings ----------------------------------------------------------------------------


def with_bindings(*bindings: AddressBinding) -> IdentityRecord:
    return IdentityRecord(ALICE, 1, (A1.public_key,), tuple(bindings))


def test_address_bindings_verify() -> None:
    record = with_bindings(bind(WALLET_A), bind(WALLET_B))
    assert verify_record_chain(ALICE, [sign(A1, record)]) == record
    assert record.address_list() == [WALLET_A_ADDRESS, ethereum.address_of_private_key(WALLET_B)]


def test_binding_by_hand_with_sign_message() -> None:
    text = address_binding_text(ALICE, ISSUED).encode("utf-8")
    binding = AddressBinding(
        ethereum.address_of_private_key(WALLET_C), ethereum.sign_message(WALLET_C, text), ISSUED
    )
    binding.verify(ALICE)
    assert binding == bind(WALLET_C)


def test_binding_for_another_inbox() -> None:
    bob = key("b1").installation_id
    record = with_bindings(bind(WALLET_A, bob))
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [sign(A1, record)])
    check(info, "record.address")
    assert WALLET_A_ADDRESS in str(info.value)


def test_tampered_bindings() -> None:
    good = bind(WALLET_A)
    sig = good.signature
    tampered = [
        replace(good, address=ethereum.address_of_private_key(WALLET_B)),  # another address
        replace(good, issued_at=ISSUED + 1),  # another time
        replace(good, issued_at=0),
        replace(good, signature=sig[:10] + bytes([sig[10] ^ 1]) + sig[11:]),  # r changed
        replace(good, signature=sig[:40] + bytes([sig[40] ^ 1]) + sig[41:]),  # s changed
        replace(good, signature=sig[:64] + bytes([55 - sig[64]])),  # the other v (27 <-> 28)
        replace(good, signature=sig[:64] + b"\x1d"),  # v = 29
        replace(good, signature=bytes(65)),  # r = s = 0
        replace(good, signature=b"\xff" * 65),  # out of range
    ]
    for binding in tampered:
        with pytest.raises(IdentityError) as info:
            verify_record_chain(ALICE, [sign(A1, with_bindings(binding))])
        check(info, "record.address")
        with pytest.raises(IdentityError) as info:
            binding.verify(ALICE)
        check(info, "record.address")


def test_binding_signed_over_other_text() -> None:
    text = b"Veilpost: " + ALICE.encode()
    binding = AddressBinding(WALLET_A_ADDRESS, ethereum.sign_message(WALLET_A, text), ISSUED)
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [sign(A1, with_bindings(binding))])
    check(info, "record.address")


def test_duplicate_addresses() -> None:
    binding = bind(WALLET_A)
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [sign(A1, with_bindings(binding, binding))])
    check(info, "record.address")


def test_duplicate_addresses_signed_at_different_times() -> None:
    # Both bindings verify on their own; a record still holds one per address.
    older, newer = bind(WALLET_A, issued_at=ISSUED), bind(WALLET_A, issued_at=ISSUED + 60)
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [sign(A1, with_bindings(older, newer))])
    check(info, "record.address")


def test_binding_over_another_time() -> None:
    # The wallet signed the binding at ISSUED; the record claims a later time.
    text = address_binding_text(ALICE, ISSUED).encode("utf-8")
    later = AddressBinding(WALLET_A_ADDRESS, ethereum.sign_message(WALLET_A, text), ISSUED + 3600)
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [sign(A1, with_bindings(later))])
    check(info, "record.address")


def test_duplicate_addresses_spelled_differently() -> None:
    # Two bindings of one address, one written in lower case: decoding normalizes both.
    binding = bind(WALLET_A)
    lower = replace(binding, address=binding.address.lower())
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [sign(A1, with_bindings(binding, lower))])
    check(info, "record.address")


def test_too_many_addresses() -> None:
    wallets = [hashlib.sha256(b"wallet %d" % i).digest() for i in range(MAX_ADDRESSES + 1)]
    bindings = [bind(w) for w in wallets]
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [sign(A1, with_bindings(*bindings))])
    check(info, "record.address")
    at_limit = with_bindings(*bindings[:MAX_ADDRESSES])
    assert verify_record_chain(ALICE, [sign(A1, at_limit)]) == at_limit


def test_a_bad_binding_in_a_later_version() -> None:
    v2 = V1.successor(bind=[bind(WALLET_A, key("b1").installation_id)])
    with pytest.raises(IdentityError) as info:
        verify_record_chain(ALICE, [sign(A1, V1), sign(A1, v2)])
    check(info, "record.address")


def test_successor_rebinds_an_address_once() -> None:
    first = bind(WALLET_A)
    v2 = V1.successor(bind=[first])
    v3 = v2.successor(bind=[first, bind(WALLET_B)])
    assert len(v3.addresses) == 2
    renewed = bind(WALLET_A, issued_at=ISSUED + 60)
    v4 = v3.successor(bind=[renewed])  # the newer binding of an address replaces the older
    assert v4.addresses == (renewed, bind(WALLET_B))
    chain = [sign(A1, V1), sign(A1, v2), sign(A1, v3), sign(A1, v4)]
    assert verify_record_chain(ALICE, chain) == v4


# -- credentials ---------------------------------------------------------------------------------


def test_credential_round_trip() -> None:
    assert inbox_of_credential(credential_for(ALICE)) == ALICE
    assert credential_for(ALICE) == Credential.basic(ALICE.encode())
    assert installation_id(A1.public_key) == ALICE


def test_non_basic_credentials() -> None:
    for credential in [Credential.x509([b"\x30\x00"]), Credential.x509([])]:
        with pytest.raises(IdentityError) as info:
            inbox_of_credential(credential)
        check(info, "credential.type")


@pytest.mark.parametrize(
    "identity",
    [
        b"",
        ALICE.upper().encode(),
        ALICE[:-1].encode() + b"A",
        ALICE[:-1].encode(),
        ALICE.encode() + b"0",
        ALICE.encode() + b"\n",
        b" " + ALICE.encode(),
        b"0x" + ALICE[2:].encode(),
        b"g" * 32,
        b"z" + ALICE[1:].encode(),
        b"\xff" * 32,
        "٣".encode() * 16,  # UTF-8, not ASCII
        A1.public_key,
    ],
    ids=[
        "empty",
        "upper",
        "one-upper",
        "short",
        "long",
        "newline",
        "space",
        "0x",
        "non-hex",
        "non-hex-first",
        "non-ascii",
        "unicode-digits",
        "raw-key",
    ],
)
def test_credential_identity_that_is_not_an_inbox(identity: bytes) -> None:
    with pytest.raises(IdentityError) as info:
        inbox_of_credential(Credential.basic(identity))
    check(info, "credential.inbox")


# -- installation keys ---------------------------------------------------------------------------


def test_installation_key_from_hex() -> None:
    raw = A1.private_key
    assert InstallationKey.from_hex(raw.hex()).public_key == A1.public_key
    assert InstallationKey.from_hex("0x" + raw.hex() + "\n").public_key == A1.public_key
    for text in ["", "zz" * 32, raw.hex()[:-2], raw.hex() + "00"]:
        with pytest.raises(ValueError):
            InstallationKey.from_hex(text)
    assert repr(A1) == f"InstallationKey(installation_id={ALICE})"
    assert A1.private_key.hex() not in repr(A1)


def test_installation_key_generate_uses_the_providers_randomness() -> None:
    provider = CryptoProvider(FAST, random=lambda n: b"\x42" * n)
    generated = InstallationKey.generate(provider=provider)
    assert generated.private_key == b"\x42" * 32
    assert generated.public_key == InstallationKey(b"\x42" * 32).public_key
    with pytest.raises(ValueError):
        InstallationKey(b"\x42" * 31)
