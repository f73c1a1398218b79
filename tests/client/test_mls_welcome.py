"""Opening a Welcome (RFC 9420 §12.4.3.1): the working group's ``welcome.json`` on every
backend, a sealed-then-opened round trip with path secret and PSKs, and one test per rule a
Welcome can break."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mls_vectors import run_vector_file
from support import MLS_VECTORS, h, load_json

from veilpost.codec import DecodeError, decode, encode
from veilpost.crypto import CipherSuite, CryptoBackend, CryptoProvider
from veilpost.mls.errors import ProtocolError, UsageError
from veilpost.mls.framing import MLSMessage
from veilpost.mls.group_context import GroupContext
from veilpost.mls.group_info import GroupInfo
from veilpost.mls.key_package import KeyPackage
from veilpost.mls.key_schedule import (
    EpochSecrets,
    derive_epoch_secret,
    derive_epoch_secrets,
    derive_welcome_secret,
    welcome_key_and_nonce,
)
from veilpost.mls.psk import PreSharedKeyID, PSKType, ResumptionPSKUsage, psk_secret
from veilpost.mls.transcript_hash import interim_transcript_hash
from veilpost.mls.update_path import HPKECiphertext
from veilpost.mls.vectors import CHECKERS, VectorMismatch
from veilpost.mls.vectors.welcome import check_welcome
from veilpost.mls.welcome import EncryptedGroupSecrets, GroupSecrets, Welcome
from veilpost.mls.welcome_processing import (
    OpenedWelcome,
    PskLookup,
    open_welcome,
    seal_welcome,
)

VECTORS = load_json(MLS_VECTORS / "welcome.json")
SIGNER = 3
CONTEXT = GroupContext(
    cipher_suite=1,
    group_id=b"welcoming group",
    epoch=5,
    tree_hash=b"\x74" * 32,
    confirmed_transcript_hash=b"\x63" * 32,
)


def test_welcome_vectors(backend: CryptoBackend) -> None:
    assert CHECKERS["welcome"] is check_welcome
    assert {1, 3} <= run_vector_file("welcome", backend)


@functools.cache
def _sample_key_package() -> KeyPackage:
    key_package = decode_message(h(VECTORS[0]["key_package"]))
    assert isinstance(key_package, KeyPackage) and key_package.cipher_suite == 1
    return key_package


def decode_message(data: bytes) -> object:
    return decode(MLSMessage, data).body


@functools.cache
def _keys(backend_name: str, seed: int) -> tuple[bytes, bytes, bytes, bytes]:
    """``(signature_priv, signature_pub, init_priv, init_pub)`` derived from ``seed``."""
    suite = CipherSuite(1, CryptoProvider(backend_name))
    signature_priv = bytes([seed]) * 32
    init_priv, init_pub = suite.derive_hpke_key_pair(bytes([seed]) * 32)
    return signature_priv, suite.signature_public_key(signature_priv), init_priv, init_pub


@dataclass(frozen=True)
class Joiner:
    key_package: KeyPackage
    init_private_key: bytes


@dataclass
class Group:
    """Epoch 5 of a group that the member at leaf 3 welcomes new members into."""

    suite: CipherSuite
    joiner_secret: bytes = b"\x6a" * 32
    context: GroupContext = CONTEXT

    def keys(self, seed: int) -> tuple[bytes, bytes, bytes, bytes]:
        return _keys(self.suite.provider.backend.name, seed)

    def joiner(self, seed: int) -> Joiner:
        signature_priv, signature_pub, init_priv, init_pub = self.keys(seed)
        leaf = replace(_sample_key_package().leaf_node, signature_key=signature_pub)
        key_package = KeyPackage(1, init_pub, leaf).sign(self.suite, signature_priv)
        return Joiner(key_package, init_priv)

    @property
    def signer_pub(self) -> bytes:
        return self.keys(SIGNER)[1]

    def epoch_secrets(self, psk_value: bytes | None = None) -> EpochSecrets:
        epoch_secret = derive_epoch_secret(self.suite, self.joiner_secret, self.context, psk_value)
        return derive_epoch_secrets(self.suite, epoch_secret)

    def group_info(
        self,
        psk_value: bytes | None = None,
        *,
        confirmation_tag: bytes | None = None,
        signature_priv: bytes | None = None,
    ) -> GroupInfo:
        tag = confirmation_tag or self.epoch_secrets(psk_value).confirmation_tag(
            self.context.confirmed_transcript_hash
        )
        unsigned = GroupInfo(self.context, [], tag, SIGNER)
        return unsigned.sign(self.suite, signature_priv or self.keys(SIGNER)[0])

    def welcome(
        self,
        *joiners: Joiner,
        psks: list[tuple[PreSharedKeyID, bytes]] | None = None,
        group_info: GroupInfo | None = None,
        path_secret: bytes | None = None,
    ) -> Welcome:
        psks = psks or []
        if group_info is None:
            group_info = self.group_info(psk_secret(self.suite, psks) if psks else None)
        members = [(j.key_package, path_secret) for j in joiners]
        return seal_welcome(self.suite, group_info, self.joiner_secret, members, psks=psks)

    def open(
        self, welcome: Welcome, joiner: Joiner, psk_lookup: PskLookup | None = None
    ) -> OpenedWelcome:
        extra = {} if psk_lookup is None else {"psk_lookup": psk_lookup}
        return open_welcome(
            self.suite,
            welcome,
            joiner.key_package,
            joiner.init_private_key,
            signer_signature_key=lambda info: self.signer_pub if info.signer == SIGNER else None,
            **extra,
        )


@pytest.fixture
def group(backend: CryptoBackend) -> Group:
    return Group(CipherSuite(1, CryptoProvider(backend)))


def _check(excinfo: pytest.ExceptionInfo[ProtocolError]) -> tuple[str, str | None]:
    return excinfo.value.check, excinfo.value.section


def _external_psk(suite: CipherSuite, psk_id: bytes) -> PreSharedKeyID:
    return PreSharedKeyID(PSKType.EXTERNAL, psk_nonce=b"\x4e" * suite.kdf_size, psk_id=psk_id)


def _resumption_psk(
    usage: ResumptionPSKUsage, epoch: int = 4, nonce: bytes = b"\x52" * 32
) -> PreSharedKeyID:
    return PreSharedKeyID(
        PSKType.RESUMPTION, psk_nonce=nonce, usage=usage, psk_group_id=b"old", psk_epoch=epoch
    )


# -- what a Welcome gives ----------------------------------------------------------------------


def test_a_sealed_welcome_opens_for_each_new_member(group: Group) -> None:
    alice, bob = group.joiner(0x21), group.joiner(0x22)
    welcome = group.welcome(alice, bob, path_secret=b"\x70" * 32)
    wire = decode_message(encode(MLSMessage(welcome)))
    assert isinstance(wire, Welcome) and wire == welcome
    expected_secrets = group.epoch_secrets()
    for joiner in (alice, bob):
        opened = group.open(wire, joiner)
        assert opened.group_info == group.group_info()
        assert opened.group_secrets.joiner_secret == group.joiner_secret
        assert opened.group_secrets.path_secret is not None
        assert opened.group_secrets.path_secret.path_secret == b"\x70" * 32
        assert opened.psk_secret == bytes(32)
        assert opened.epoch_secrets.epoch_authenticator == expected_secrets.epoch_authenticator
        assert opened.epoch_secrets.encryption_secret == expected_secrets.encryption_secret
        assert opened.interim_transcript_hash == interim_transcript_hash(
            group.suite, group.context.confirmed_transcript_hash, opened.group_info.confirmation_tag
        )


def test_external_and_resumption_psks_enter_the_key_schedule(group: Group) -> None:
    external = _external_psk(group.suite, b"shared with the bot")
    resumption = _resumption_psk(ResumptionPSKUsage.APPLICATION)
    values = {external: b"\x01" * 32, resumption: b"\x02" * 32}
    joiner = group.joiner(0x23)
    welcome = group.welcome(joiner, psks=list(values.items()))
    opened = group.open(welcome, joiner, values.get)
    assert opened.group_secrets.psks == [external, resumption]
    assert opened.psk_secret == psk_secret(group.suite, list(values.items()))
    assert opened.psk_secret != bytes(32)


# -- one broken rule each ----------------------------------------------------------------------


def test_a_welcome_for_someone_else_is_refused(group: Group) -> None:
    welcome = group.welcome(group.joiner(0x22))
    with pytest.raises(ProtocolError, match="none of the Welcome's 1 entries") as excinfo:
        group.open(welcome, group.joiner(0x21))
    assert _check(excinfo) == ("welcome.no_matching_key_package", "12.4.3.1")


def test_a_corrupted_encrypted_group_info_is_refused(group: Group) -> None:
    joiner = group.joiner(0x21)
    welcome = group.welcome(joiner)
    data = welcome.encrypted_group_info
    corrupted = replace(welcome, encrypted_group_info=data[:-1] + bytes([data[-1] ^ 1]))
    # The group secrets are encrypted with encrypted_group_info as HPKE context: corrupting it
    # makes them fail first.
    with pytest.raises(ProtocolError, match="do not decrypt") as excinfo:
        group.open(corrupted, joiner)
    assert _check(excinfo) == ("welcome.group_secrets_decrypt", "12.4.3.1")


def test_a_group_info_under_another_welcome_key_is_refused(group: Group) -> None:
    joiner = group.joiner(0x21)
    other_key, other_nonce = welcome_key_and_nonce(
        group.suite, derive_welcome_secret(group.suite, b"\x00" * 32)
    )
    encrypted_group_info = group.suite.aead_seal(
        other_key, other_nonce, b"", encode(group.group_info())
    )
    welcome = _welcome_with(
        group, joiner, encrypted_group_info, encode(GroupSecrets(group.joiner_secret))
    )
    with pytest.raises(ProtocolError, match="does not decrypt with the welcome key") as excinfo:
        group.open(welcome, joiner)
    assert _check(excinfo) == ("welcome.group_info_decrypt", "12.4.3.1")


def _welcome_with(
    group: Group, joiner: Joiner, encrypted_group_info: bytes, group_secrets: bytes
) -> Welcome:
    """A Welcome built by hand from its two ciphertexts' plaintexts (§12.4.3.1)."""
    kem_output, ciphertext = group.suite.encrypt_with_label(
        joiner.key_package.init_key, "Welcome", encrypted_group_info, group_secrets
    )
    entry = EncryptedGroupSecrets(
        joiner.key_package.ref(group.suite), HPKECiphertext(kem_output, ciphertext)
    )
    return Welcome(1, [entry], encrypted_group_info)


def test_a_different_psk_value_gives_a_different_welcome_key(group: Group) -> None:
    psk = _external_psk(group.suite, b"psk")
    joiner = group.joiner(0x21)
    welcome = group.welcome(joiner, psks=[(psk, b"\x01" * 32)])
    with pytest.raises(ProtocolError) as excinfo:
        group.open(welcome, joiner, lambda psk_id: b"\x02" * 32)
    assert _check(excinfo) == ("welcome.group_info_decrypt", "12.4.3.1")


def test_a_missing_psk_is_refused(group: Group) -> None:
    psk = _external_psk(group.suite, b"psk I never had")
    joiner = group.joiner(0x21)
    welcome = group.welcome(joiner, psks=[(psk, b"\x01" * 32)])
    with pytest.raises(ProtocolError, match="external PSK 70736b2049") as excinfo:
        group.open(welcome, joiner)  # the default lookup knows no PSK
    assert _check(excinfo) == ("welcome.psk_missing", "12.4.3.1")


def test_at_most_one_reinit_or_branch_psk(group: Group) -> None:
    psks = [
        (_resumption_psk(ResumptionPSKUsage.REINIT), b"\x01" * 32),
        (_resumption_psk(ResumptionPSKUsage.BRANCH), b"\x02" * 32),
    ]
    joiner = group.joiner(0x21)
    welcome = group.welcome(joiner, psks=psks)
    with pytest.raises(ProtocolError, match="2 resumption PSKs") as excinfo:
        group.open(welcome, joiner, dict(psks).get)
    assert _check(excinfo) == ("welcome.psk_usage", "12.4.3.1")


def test_a_reinit_psk_needs_epoch_1(group: Group) -> None:
    psks = [(_resumption_psk(ResumptionPSKUsage.REINIT), b"\x01" * 32)]
    joiner = group.joiner(0x21)
    with pytest.raises(ProtocolError, match="at epoch 1, not 5") as excinfo:
        group.open(group.welcome(joiner, psks=psks), joiner, dict(psks).get)
    assert _check(excinfo) == ("welcome.resumption_epoch", "12.4.3.1")
    new_group = replace(group, context=replace(group.context, epoch=1))
    opened = new_group.open(new_group.welcome(joiner, psks=psks), joiner, dict(psks).get)
    assert opened.group_info.group_context.epoch == 1


def test_a_psk_nonce_of_the_wrong_size_is_refused(group: Group) -> None:
    psks = [(_resumption_psk(ResumptionPSKUsage.APPLICATION, nonce=b"\x52" * 16), b"\x01" * 32)]
    joiner = group.joiner(0x21)
    with pytest.raises(ProtocolError, match="psk_nonce of 16 bytes") as excinfo:
        group.open(group.welcome(joiner, psks=psks), joiner, dict(psks).get)
    assert _check(excinfo) == ("welcome.psk_nonce", "8.4")


def test_the_wrong_init_key_is_refused(group: Group) -> None:
    joiner = group.joiner(0x21)
    welcome = group.welcome(joiner)
    other = replace(joiner, init_private_key=group.keys(0x22)[2])
    with pytest.raises(ProtocolError) as excinfo:
        group.open(welcome, other)
    assert _check(excinfo) == ("welcome.group_secrets_decrypt", "12.4.3.1")


def test_malformed_group_secrets_and_group_info_are_refused(group: Group) -> None:
    joiner = group.joiner(0x21)
    welcome = group.welcome(joiner)
    bad_secrets = _welcome_with(group, joiner, welcome.encrypted_group_info, b"\x20" + bytes(31))
    with pytest.raises(ProtocolError, match="GroupSecrets are malformed") as excinfo:
        group.open(bad_secrets, joiner)
    assert excinfo.value.check == "welcome.group_secrets"

    key, nonce = welcome_key_and_nonce(
        group.suite, derive_welcome_secret(group.suite, group.joiner_secret)
    )
    garbage_info = group.suite.aead_seal(key, nonce, b"", b"\x00\x01\x02")
    bad_info = _welcome_with(group, joiner, garbage_info, encode(GroupSecrets(group.joiner_secret)))
    with pytest.raises(ProtocolError, match="GroupInfo is malformed") as excinfo:
        group.open(bad_info, joiner)
    assert excinfo.value.check == "welcome.group_info"


def test_a_group_info_signed_by_the_wrong_key_is_refused(group: Group) -> None:
    joiner = group.joiner(0x21)
    forged = group.group_info(signature_priv=group.keys(0x30)[0])
    with pytest.raises(ProtocolError, match="signer leaf 3") as excinfo:
        group.open(group.welcome(joiner, group_info=forged), joiner)
    assert _check(excinfo) == ("group_info.signature", "12.4.3.1")


def test_a_blank_signer_leaf_is_refused(group: Group) -> None:
    joiner = group.joiner(0x21)
    welcome = group.welcome(joiner)
    with pytest.raises(ProtocolError, match="signer leaf 3 is blank") as excinfo:
        open_welcome(
            group.suite,
            welcome,
            joiner.key_package,
            joiner.init_private_key,
            signer_signature_key=lambda info: None,
        )
    assert _check(excinfo) == ("group_info.signer", "12.4.3.1")


def test_a_wrong_confirmation_tag_is_refused(group: Group) -> None:
    joiner = group.joiner(0x21)
    right = group.group_info().confirmation_tag
    wrong = group.group_info(confirmation_tag=right[:-1] + bytes([right[-1] ^ 1]))
    with pytest.raises(ProtocolError, match="confirmation_tag") as excinfo:
        group.open(group.welcome(joiner, group_info=wrong), joiner)
    assert _check(excinfo) == ("group_info.confirmation_tag", "12.4.3.1")


def test_cipher_suite_mismatches_are_refused(group: Group) -> None:
    joiner = group.joiner(0x21)
    welcome = group.welcome(joiner)
    with pytest.raises(ProtocolError, match="Welcome uses cipher suite 0x0003") as excinfo:
        group.open(replace(welcome, cipher_suite=3), joiner)
    assert excinfo.value.check == "welcome.cipher_suite"
    other_suite = replace(group, context=replace(group.context, cipher_suite=3))
    with pytest.raises(ProtocolError, match="GroupInfo uses cipher suite 0x0003") as excinfo:
        group.open(other_suite.welcome(joiner), joiner)
    assert excinfo.value.check == "welcome.cipher_suite"
    with pytest.raises(UsageError, match="open its Welcome with that suite, not 0x0003"):
        open_welcome(
            CipherSuite(3, group.suite.provider),
            welcome,
            joiner.key_package,
            joiner.init_private_key,
            signer_signature_key=lambda info: group.signer_pub,
        )


def test_sealing_needs_a_signed_group_info_and_matching_key_packages(group: Group) -> None:
    unsigned = replace(group.group_info(), signature=b"")
    with pytest.raises(UsageError, match="sign the GroupInfo"):
        seal_welcome(group.suite, unsigned, group.joiner_secret, [])
    joiner = group.joiner(0x21)
    other = replace(joiner.key_package, cipher_suite=3)
    with pytest.raises(UsageError, match="cipher suite 0x0003"):
        seal_welcome(group.suite, group.group_info(), group.joiner_secret, [(other, None)])


def test_the_checker_fails_on_a_wrong_key(backend: CryptoBackend) -> None:
    provider = CryptoProvider(backend)
    case = dict(VECTORS[0])
    check_welcome(case, provider)
    with pytest.raises(
        VectorMismatch, match=r"group_info\.signature: GroupInfo signature does not verify"
    ):
        check_welcome({**case, "signer_pub": case["signer_pub"][:-2] + "00"}, provider)
    with pytest.raises(VectorMismatch, match=r"welcome\.group_secrets_decrypt"):
        check_welcome({**case, "init_priv": "11" * 32}, provider)


@functools.cache
def _fuzz_case() -> tuple[Group, Joiner, bytes]:
    group = Group(CipherSuite(1, CryptoProvider()))
    joiner = group.joiner(0x21)
    psk = _external_psk(group.suite, b"psk")
    welcome = group.welcome(joiner, psks=[(psk, b"\x01" * 32)], path_secret=b"\x70" * 32)
    return group, joiner, encode(MLSMessage(welcome))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_welcomes_give_only_typed_errors(data: st.DataObject) -> None:
    group, joiner, seed = _fuzz_case()
    mutated = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(mutated) - 1))
        mutated[at] ^= data.draw(st.integers(1, 255))
    try:
        welcome = decode(MLSMessage, bytes(mutated)).body
    except DecodeError:
        return
    if isinstance(welcome, Welcome):
        try:
            group.open(welcome, joiner, lambda psk_id: b"\x01" * 32)
        except ProtocolError as exc:
            assert exc.check.startswith(("welcome.", "group_info."))
