"""docs/protocol.md stays true: every error code the relay can send is listed, and the
signature test vector is what the code computes."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from veilpost.crypto import get_backend
from veilpost.protocol import address_binding_text
from webapp.relay.identifiers import auth_message, group_topic, installation_id

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()
ERROR_CONSTRUCTOR = re.compile(
    r"\b(?:InvalidInput|AuthenticationFailed|Forbidden|NotFound|Conflict|TooLarge|RelayError)"
    r'\(\s*"([a-z_]+)"'
)


def codes_in_source() -> set[str]:
    codes = {"rate_limited"}  # RateLimited sets its code itself
    for path in (ROOT / "webapp").rglob("*.py"):
        codes |= set(ERROR_CONSTRUCTOR.findall(path.read_text()))
    # The REST layer's own codes (webapp/api.py).
    codes |= set(
        re.findall(
            r'error_response\(\s*request,\s*\d+,\s*"([a-z_]+)"',
            (ROOT / "webapp" / "api.py").read_text(),
        )
    )
    return codes


def test_every_error_code_is_documented() -> None:
    codes = codes_in_source()
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", PROTOCOL, flags=re.MULTILINE))

    assert len(codes) > 40  # the pattern still finds them
    assert codes - documented == set()
    assert documented - codes <= {"unauthorized", "method_not_allowed", "not_found"}


def test_signature_test_vector() -> None:
    private_key = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    public_key = get_backend().ed25519_public_key(private_key)
    nonce = bytes(range(32))
    message = auth_message("relay.example", nonce)
    signature = get_backend().ed25519_sign(private_key, message)

    assert base64.b64encode(public_key).decode() in PROTOCOL
    assert f"installation id {installation_id(public_key)}" in PROTOCOL
    assert base64.b64encode(nonce).decode() in PROTOCOL
    documented_message = re.search(r"signed message  ((?:[0-9a-f]+\s+)+)", PROTOCOL)
    assert documented_message is not None
    assert "".join(documented_message.group(1).split()) == message.hex()
    assert base64.b64encode(signature).decode() in PROTOCOL


def test_topic_name_example() -> None:
    example = group_topic(bytes.fromhex("00112233445566778899aabbccddeeff"))

    assert f"is topic\n`{example}`" in PROTOCOL


def test_address_binding_text_example() -> None:
    text = address_binding_text("cdee7eea29bed3271c21180285de5750", 1764000000)

    assert f"```text\n{text}\n```" in PROTOCOL
