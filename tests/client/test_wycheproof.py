"""Project Wycheproof vectors on every backend.

Every test in the applicable files runs: "valid" cases must give the expected output,
"invalid" cases must be rejected, and "acceptable" cases must either be rejected or give the
expected output (for X25519, the all-zero shared secret is always rejected, RFC 7748 §6.1).
Groups that do not apply to MLS (AES key sizes other than 128, nonces other than 96 bits) are
counted as skipped. The counts are printed in the "test vectors run" summary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from support import VECTOR_COUNTS, WYCHEPROOF, h, load_json

from veilpost.crypto.backend import Aead, CryptoBackend
from veilpost.crypto.errors import AeadAuthenticationError, CryptoError

Check = Callable[[CryptoBackend, dict[str, Any], dict[str, Any]], bool]


def _run(
    backend: CryptoBackend, filename: str, applies: Callable[[dict[str, Any]], bool], check: Check
) -> None:
    data = load_json(WYCHEPROOF / filename)
    counts = VECTOR_COUNTS[f"wycheproof {filename} [{backend.name}]"]
    failures = []
    for group in data["testGroups"]:
        for case in group["tests"]:
            if not applies(group):
                counts["skipped (not applicable)"] += 1
                continue
            try:
                ok = check(backend, group, case)
            except Exception as exc:  # a crash is a failure, reported with the case id
                ok = False
                case = {**case, "exception": repr(exc)}
            counts[case["result"]] += 1
            if not ok:
                failures.append(case)
    assert not failures, f"{len(failures)} failing cases, first: {failures[:3]}"
    assert sum(v for k, v in counts.items() if not k.startswith("skipped")) > 0


def _rejects(fn: Callable[[], object], *errors: type[BaseException]) -> bool:
    try:
        fn()
    except errors:
        return True
    return False


def check_x25519(backend: CryptoBackend, group: dict[str, Any], case: dict[str, Any]) -> bool:
    private, public, shared = h(case["private"]), h(case["public"]), h(case["shared"])
    if shared == bytes(32):  # the all-zero output must be refused
        return _rejects(lambda: backend.x25519(private, public), CryptoError)
    if case["result"] == "invalid":
        return _rejects(lambda: backend.x25519(private, public), CryptoError)
    return backend.x25519(private, public) == shared


def check_ed25519(backend: CryptoBackend, group: dict[str, Any], case: dict[str, Any]) -> bool:
    pk = h(group["publicKey"]["pk"])
    verified = backend.ed25519_verify(pk, h(case["msg"]), h(case["sig"]))
    if case["result"] == "valid":
        # Valid cases come from signing too: RFC 8032 signing is deterministic.
        if "privateKey" in group and backend.ed25519_sign(
            h(group["privateKey"]["sk"]), h(case["msg"])
        ) != h(case["sig"]):
            return False
        return verified
    return not verified


def _aead_check(aead: Aead) -> Check:
    def check(backend: CryptoBackend, group: dict[str, Any], case: dict[str, Any]) -> bool:
        key, nonce, aad, msg = h(case["key"]), h(case["iv"]), h(case["aad"]), h(case["msg"])
        sealed = h(case["ct"]) + h(case["tag"])
        if case["result"] == "invalid":
            return _rejects(
                lambda: backend.aead_open(aead, key, nonce, aad, sealed), AeadAuthenticationError
            )
        return (
            backend.aead_seal(aead, key, nonce, aad, msg) == sealed
            and backend.aead_open(aead, key, nonce, aad, sealed) == msg
        )

    return check


def check_hkdf(backend: CryptoBackend, group: dict[str, Any], case: dict[str, Any]) -> bool:
    def derive() -> bytes:
        prk = backend.hkdf_extract(h(case["salt"]), h(case["ikm"]))
        return backend.hkdf_expand(prk, h(case["info"]), case["size"])

    if case["result"] == "invalid":  # output sizes beyond 255 * HashLen
        return _rejects(derive, ValueError)
    return derive() == h(case["okm"])


def check_hmac(backend: CryptoBackend, group: dict[str, Any], case: dict[str, Any]) -> bool:
    tag_size: int = group["tagSize"] // 8
    tag = backend.hmac_sha256(h(case["key"]), h(case["msg"]))[:tag_size]
    valid: bool = case["result"] == "valid"
    return (tag == h(case["tag"])) == valid


def _aead_applies(key_bits: int) -> Callable[[dict[str, Any]], bool]:
    return lambda g: g["keySize"] == key_bits and g["ivSize"] == 96 and g["tagSize"] == 128


def _always(group: dict[str, Any]) -> bool:
    return True


CASES = {
    "x25519_test.json": (_always, check_x25519),
    "ed25519_test.json": (_always, check_ed25519),
    "aes_gcm_test.json": (_aead_applies(128), _aead_check(Aead.AES_128_GCM)),
    "chacha20_poly1305_test.json": (_aead_applies(256), _aead_check(Aead.CHACHA20_POLY1305)),
    "hkdf_sha256_test.json": (_always, check_hkdf),
    "hmac_sha256_test.json": (_always, check_hmac),
}


@pytest.mark.parametrize("filename", sorted(CASES))
def test_wycheproof(backend: CryptoBackend, filename: str) -> None:
    applies, check = CASES[filename]
    _run(backend, filename, applies, check)
