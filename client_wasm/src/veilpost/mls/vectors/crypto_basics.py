"""Checker for ``crypto-basics.json``: the labelled helpers of RFC 9420 §5 and §8."""

from __future__ import annotations

from veilpost.crypto import CryptoProvider, SignatureVerificationError
from veilpost.mls.vectors import Case, VectorMismatch, checker, expect, h, suite_for


@checker("crypto-basics")
def check_crypto_basics(case: Case, provider: CryptoProvider) -> None:
    """RefHash, ExpandWithLabel, DeriveSecret, DeriveTreeSecret, Sign/VerifyWithLabel and
    Encrypt/DecryptWithLabel (decrypting the vector's ciphertext and a fresh one of ours)."""
    suite = suite_for(case, provider)

    r = case["ref_hash"]
    expect(suite.ref_hash(r["label"], h(r["value"])), h(r["out"]), "ref_hash")

    e = case["expand_with_label"]
    out = suite.expand_with_label(h(e["secret"]), e["label"], h(e["context"]), e["length"])
    expect(out, h(e["out"]), "expand_with_label")

    d = case["derive_secret"]
    expect(suite.derive_secret(h(d["secret"]), d["label"]), h(d["out"]), "derive_secret")

    t = case["derive_tree_secret"]
    out = suite.derive_tree_secret(h(t["secret"]), t["label"], t["generation"], t["length"])
    expect(out, h(t["out"]), "derive_tree_secret")

    s = case["sign_with_label"]
    priv, pub, content, sig = h(s["priv"]), h(s["pub"]), h(s["content"]), h(s["signature"])
    expect(suite.signature_public_key(priv), pub, "sign_with_label public key")
    try:
        suite.verify_with_label(pub, s["label"], content, sig)
    except SignatureVerificationError as exc:
        raise VectorMismatch(f"sign_with_label: vector signature rejected: {exc}") from exc
    # Ed25519 is deterministic, so our own signature must equal the vector's.
    expect(suite.sign_with_label(priv, s["label"], content), sig, "sign_with_label signature")

    c = case["encrypt_with_label"]
    label, context, plaintext = c["label"], h(c["context"]), h(c["plaintext"])
    decrypted = suite.decrypt_with_label(
        h(c["priv"]), label, context, h(c["kem_output"]), h(c["ciphertext"])
    )
    expect(decrypted, plaintext, "encrypt_with_label: decrypting the vector")
    kem_output, ciphertext = suite.encrypt_with_label(h(c["pub"]), label, context, plaintext)
    decrypted = suite.decrypt_with_label(h(c["priv"]), label, context, kem_output, ciphertext)
    expect(decrypted, plaintext, "encrypt_with_label: round trip")
