"""Address bindings (reach an inbox by an Ethereum address) and blobs (encrypted attachments),
through the whole Django stack (Django's test client; the ASGI application for large bodies):
the success paths, then each rule broken by a request that breaks only that rule."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from relay_support import HOST, Device, b64, unb64

from veilpost.crypto import secp256k1
from veilpost.crypto.ethereum import (
    address_of_private_key,
    sign_message,
    verify_message,
)
from veilpost.protocol import address_binding_text
from webapp.asgi import application
from webapp.relay import auth
from webapp.relay.blobs import blob_id
from webapp.relay.models import AddressBinding, Blob
from webapp.relay.retention import prune, stats

pytestmark = pytest.mark.django_db

API = "/api/v1"
# Fixed test wallets (never hold funds with a key printed in a test).
WALLET = hashlib.sha256(b"veilpost test wallet 1").digest()
OTHER_WALLET = hashlib.sha256(b"veilpost test wallet 2").digest()
ADDRESS = address_of_private_key(WALLET)
OTHER_ADDRESS = address_of_private_key(OTHER_WALLET)


class Session:
    """A device with a bearer token, talking to /api/v1 through Django's test client."""

    def __init__(self, device: Device | None = None) -> None:
        self.client = Client(HTTP_HOST=HOST)
        self.device = device or Device()
        challenge = self.client.post(f"{API}/auth/challenge").json()
        answer = {
            "nonce": challenge["nonce"],
            "public_key": b64(self.device.public_key),
            "signature": b64(self.device.answer(unb64(challenge["nonce"]), challenge["audience"])),
        }
        response = self.client.post(f"{API}/auth/token", answer, content_type="application/json")
        assert response.status_code == 201, response.json()
        self.auth = {"authorization": f"Bearer {response.json()['token']}"}

    @property
    def id(self) -> str:
        return self.device.installation_id

    def get(self, path: str) -> Any:
        return self.client.get(f"{API}{path}", headers=self.auth)

    def post(self, path: str, body: Any) -> Any:
        return self.client.post(
            f"{API}{path}", body, content_type="application/json", headers=self.auth
        )

    def put(self, path: str, body: Any) -> Any:
        return self.client.put(
            f"{API}{path}", body, content_type="application/json", headers=self.auth
        )

    def upload(self, data: bytes, **extra: Any) -> Any:
        return self.client.post(
            f"{API}/blobs",
            data,
            content_type="application/octet-stream",
            headers=self.auth,
            **extra,
        )


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json; charset=utf-8"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body


# --- Address bindings -----------------------------------------------------------------------


ISSUED_AT = 1_764_000_000  # 2025-11-24


def wallet_signature(inbox_id: str, wallet: bytes = WALLET, issued_at: int = ISSUED_AT) -> bytes:
    return sign_message(wallet, address_binding_text(inbox_id, issued_at).encode())


def binding(
    inbox_id: str, wallet: bytes = WALLET, issued_at: int = ISSUED_AT, **change: Any
) -> dict[str, Any]:
    body = {
        "address": address_of_private_key(wallet),
        "signature": b64(wallet_signature(inbox_id, wallet, issued_at)),
        "issued_at": issued_at,
    }
    return body | change


def bind(
    session: Session,
    wallet: bytes = WALLET,
    inbox_id: str | None = None,
    issued_at: int = ISSUED_AT,
) -> Any:
    inbox_id = inbox_id or session.id
    return session.put(f"/inboxes/{inbox_id}/address", binding(inbox_id, wallet, issued_at))


def wrong_checksum(address: str) -> str:
    """``address`` with the case of one letter flipped: mixed case, but not its checksum."""
    index = next(i for i, c in enumerate(address) if i >= 2 and c.isalpha())
    return address[:index] + address[index].swapcase() + address[index + 1 :]


def test_the_fixed_wallets_have_mixed_case_checksums() -> None:
    for address in (ADDRESS, OTHER_ADDRESS):
        digits = address[2:]
        assert digits not in (digits.lower(), digits.upper())  # the checksum tests need letters


def test_binding_an_address_and_looking_it_up() -> None:
    alice, bob = Session(), Session()

    response = bind(alice)

    assert response.status_code == 201, response.json()
    stored = response.json()
    assert stored["address"] == ADDRESS  # EIP-55 checksummed
    assert stored["inbox_id"] == alice.id
    assert unb64(stored["signature"]) == wallet_signature(alice.id)
    assert stored["bound_at"] and stored["issued_at"] == ISSUED_AT
    for spelling in (ADDRESS, ADDRESS.lower(), "0x" + ADDRESS[2:].upper()):
        found = bob.get(f"/addresses/{spelling}")
        assert found.status_code == 200, found.json()
        assert found.json() == stored
    # what a client checks for itself: the wallet signed this inbox's binding text
    assert verify_message(
        stored["address"],
        address_binding_text(stored["inbox_id"], stored["issued_at"]).encode(),
        unb64(stored["signature"]),
    )
    assert bob.get(f"/inboxes/{alice.id}").json()["addresses"] == [ADDRESS]
    assert bob.get(f"/inboxes/{bob.id}").json()["addresses"] == []


def test_a_lowercase_address_is_stored_checksummed() -> None:
    alice = Session()

    response = alice.put(f"/inboxes/{alice.id}/address", binding(alice.id, address=ADDRESS.lower()))

    assert response.status_code == 201, response.json()
    assert response.json()["address"] == ADDRESS
    assert AddressBinding.objects.get().address == ADDRESS


def test_an_inbox_may_have_several_addresses() -> None:
    alice = Session()

    assert bind(alice).status_code == 201
    assert bind(alice, OTHER_WALLET).status_code == 201

    assert alice.get(f"/inboxes/{alice.id}").json()["addresses"] == [ADDRESS, OTHER_ADDRESS]


def test_every_installation_of_the_inbox_may_bind() -> None:
    laptop = Session()
    phone = Device()
    assert laptop.post("/installations", {"public_key": b64(phone.public_key)}).status_code == 201

    response = bind(Session(phone), inbox_id=laptop.id)

    assert response.status_code == 201, response.json()
    assert response.json()["inbox_id"] == laptop.id


def test_rebinding_moves_the_address_to_the_new_inbox() -> None:
    alice, bob = Session(), Session()
    bind(alice)

    moved = bind(bob, issued_at=ISSUED_AT + 1)

    assert moved.status_code == 201, moved.json()
    assert alice.get(f"/addresses/{ADDRESS}").json()["inbox_id"] == bob.id
    assert alice.get(f"/inboxes/{alice.id}").json()["addresses"] == []
    assert alice.get(f"/inboxes/{bob.id}").json()["addresses"] == [ADDRESS]
    assert AddressBinding.objects.count() == 1


def test_an_old_binding_cannot_move_the_address_back() -> None:
    alice, bob = Session(), Session()
    bind(alice)
    bind(bob, issued_at=ISSUED_AT + 60)

    replayed = alice.put(f"/inboxes/{alice.id}/address", binding(alice.id))  # the old signature
    same_time = bind(alice, issued_at=ISSUED_AT + 60)

    body = assert_error(replayed, 409, "stale_binding")
    assert body["current_issued_at"] == ISSUED_AT + 60
    assert_error(same_time, 409, "stale_binding")
    assert alice.get(f"/addresses/{ADDRESS}").json()["inbox_id"] == bob.id


def test_binding_again_to_the_same_inbox_keeps_one_binding() -> None:
    alice = Session()
    first = bind(alice).json()

    again = bind(alice)

    assert again.status_code == 201
    assert again.json()["bound_at"] >= first["bound_at"]
    assert AddressBinding.objects.count() == 1


def _high_s(signature: bytes) -> bytes:
    """The same signature with ``s`` replaced by ``n - s`` (and ``v`` flipped): it would verify
    without EIP-2's low-s rule, which makes a signature unique."""
    s = int.from_bytes(signature[32:64], "big")
    return signature[:32] + (secp256k1.N - s).to_bytes(32, "big") + bytes([55 - signature[64]])


def _other_inbox() -> str:
    return Device().installation_id


BAD_BINDINGS: list[tuple[str, Any, int, str]] = [
    # the signature is not the address's
    ("wrong signer", lambda me: {"address": OTHER_ADDRESS}, 400, "bad_signature"),
    (
        "signature for another inbox",
        lambda me: {"signature": b64(wallet_signature(_other_inbox()))},
        400,
        "bad_signature",
    ),
    (
        "signature of other text",
        lambda me: {"signature": b64(sign_message(WALLET, b"hello"))},
        400,
        "bad_signature",
    ),
    # a malformed signature
    (
        "short signature",
        lambda me: {"signature": b64(wallet_signature(me)[:64])},
        400,
        "bad_signature",
    ),
    (
        "bad v",
        lambda me: {"signature": b64(wallet_signature(me)[:64] + b"\x1d")},
        400,
        "bad_signature",
    ),
    ("high s", lambda me: {"signature": b64(_high_s(wallet_signature(me)))}, 400, "bad_signature"),
    ("zero signature", lambda me: {"signature": b64(bytes(65))}, 400, "bad_signature"),
    ("signature not base64", lambda me: {"signature": "not base64!"}, 400, "invalid_base64"),
    ("signature not a string", lambda me: {"signature": 65}, 422, "validation_error"),
    ("no signature", lambda me: {"signature": None}, 422, "validation_error"),
    # a malformed address
    ("address without 0x", lambda me: {"address": ADDRESS[2:]}, 400, "invalid_address"),
    ("address with 0X", lambda me: {"address": "0X" + ADDRESS[2:]}, 400, "invalid_address"),
    ("short address", lambda me: {"address": ADDRESS[:-1]}, 400, "invalid_address"),
    ("long address", lambda me: {"address": ADDRESS + "0"}, 400, "invalid_address"),
    ("non-hex address", lambda me: {"address": "0x" + "g" * 40}, 400, "invalid_address"),
    ("address with space", lambda me: {"address": f" {ADDRESS}"}, 400, "invalid_address"),
    ("empty address", lambda me: {"address": ""}, 400, "invalid_address"),
    ("huge address", lambda me: {"address": "0x" + "a" * 10_000}, 400, "invalid_address"),
    ("wrong checksum", lambda me: {"address": wrong_checksum(ADDRESS)}, 400, "invalid_address"),
    ("address not a string", lambda me: {"address": 7}, 422, "validation_error"),
    # the time
    (
        "signature for another time",
        lambda me: {"signature": b64(wallet_signature(me, issued_at=ISSUED_AT + 1))},
        400,
        "bad_signature",
    ),
    (
        "issued in the future",
        lambda me: {"issued_at": 2**40, "signature": b64(wallet_signature(me, issued_at=2**40))},
        400,
        "invalid_binding_time",
    ),
    (
        "issued at zero",
        lambda me: {"issued_at": 0, "signature": b64(wallet_signature(me, issued_at=0))},
        400,
        "invalid_binding_time",
    ),
    ("no time", lambda me: {"issued_at": None}, 422, "validation_error"),
]


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [pytest.param(change, status, code, id=name) for name, change, status, code in BAD_BINDINGS],
)
def test_binding_failures(change: Any, status: int, code: str) -> None:
    alice, bob = Session(), Session()
    bind(bob, OTHER_WALLET)  # an existing binding, which a failure must leave alone

    response = alice.put(f"/inboxes/{alice.id}/address", binding(alice.id, **change(alice.id)))

    assert_error(response, status, code)
    assert list(AddressBinding.objects.values_list("address", "inbox")) == [(OTHER_ADDRESS, bob.id)]


def test_binding_another_inbox_is_not_your_inbox() -> None:
    alice, mallory = Session(), Session()

    # a valid binding of the wallet to alice's inbox, sent by someone outside it
    response = mallory.put(f"/inboxes/{alice.id}/address", binding(alice.id))

    assert_error(response, 403, "not_your_inbox")
    assert not AddressBinding.objects.exists()


def test_binding_an_unknown_or_invalid_inbox() -> None:
    alice = Session()
    unknown = _other_inbox()

    assert_error(alice.put(f"/inboxes/{unknown}/address", binding(unknown)), 404, "unknown_inbox")
    assert_error(
        alice.put("/inboxes/NOT-AN-ID/address", binding(alice.id)), 400, "invalid_installation_id"
    )
    assert not AddressBinding.objects.exists()


@pytest.mark.parametrize(
    ("address", "status", "code"),
    [
        pytest.param(OTHER_ADDRESS, 404, "unknown_address", id="unknown"),
        pytest.param(wrong_checksum(ADDRESS), 400, "invalid_address", id="wrong checksum"),
        pytest.param(ADDRESS[2:], 400, "invalid_address", id="without 0x"),
        pytest.param("0x1234", 400, "invalid_address", id="short"),
        pytest.param("vitalik.eth", 400, "invalid_address", id="a name"),
    ],
)
def test_address_lookup_failures(address: str, status: int, code: str) -> None:
    alice = Session()
    bind(alice)

    assert_error(alice.get(f"/addresses/{address}"), status, code)


def test_address_endpoints_need_a_token() -> None:
    client = Client(HTTP_HOST=HOST)
    inbox = _other_inbox()

    assert_error(client.get(f"{API}/addresses/{ADDRESS}"), 401, "unauthorized")
    assert_error(
        client.put(
            f"{API}/inboxes/{inbox}/address", binding(inbox), content_type="application/json"
        ),
        401,
        "unauthorized",
    )


# --- Blobs ----------------------------------------------------------------------------------

CIPHERTEXT = bytes(range(256)) * 40  # stands in for an encrypted attachment


def test_uploading_and_downloading_a_blob() -> None:
    alice, bob = Session(), Session()

    uploaded = alice.upload(CIPHERTEXT)

    assert uploaded.status_code == 201, uploaded.json()
    body = uploaded.json()
    assert body["id"] == hashlib.sha256(CIPHERTEXT).hexdigest()
    assert body["size"] == len(CIPHERTEXT)
    assert body["created_at"]
    downloaded = bob.get(f"/blobs/{body['id']}")
    assert downloaded.status_code == 200
    assert downloaded["Content-Type"] == "application/octet-stream"
    assert downloaded["Content-Length"] == str(len(CIPHERTEXT))
    assert downloaded["ETag"] == f'"{body["id"]}"'
    assert downloaded.content == CIPHERTEXT
    stored = Blob.objects.get()
    assert (stored.pk, bytes(stored.data), stored.uploaded_by_id) == (
        body["id"],
        CIPHERTEXT,
        alice.id,
    )


def test_uploading_the_same_bytes_again_stores_nothing() -> None:
    alice, bob = Session(), Session()
    first = alice.upload(CIPHERTEXT).json()

    again = alice.upload(CIPHERTEXT)
    by_bob = bob.upload(CIPHERTEXT)

    assert (again.status_code, by_bob.status_code) == (200, 200)
    assert again.json() == by_bob.json() == first
    assert Blob.objects.count() == 1
    assert Blob.objects.get().uploaded_by_id == alice.id  # the first uploader is charged


def test_a_blob_over_djangos_json_body_limit_is_accepted(settings: Any) -> None:
    data = b"\x5a" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    alice = Session()

    uploaded = alice.upload(data)

    assert uploaded.status_code == 201, uploaded.json()
    assert alice.get(f"/blobs/{blob_id(data)}").content == data


def test_a_blob_at_the_limit_is_accepted_and_one_byte_more_is_too_large(settings: Any) -> None:
    settings.VEILPOST_MAX_BLOB_BYTES = 1024
    alice = Session()

    assert alice.upload(b"a" * 1024).status_code == 201
    body = assert_error(alice.upload(b"b" * 1025), 413, "too_large")

    assert body["limit"] == 1024
    assert Blob.objects.count() == 1


def test_a_declared_length_over_the_limit_is_refused_before_reading(settings: Any) -> None:
    settings.VEILPOST_MAX_BLOB_BYTES = 1024
    alice = Session()

    body = assert_error(alice.upload(b"small", CONTENT_LENGTH="1025"), 413, "too_large")

    assert body["limit"] == 1024
    assert not Blob.objects.exists()


def test_an_empty_blob_is_refused() -> None:
    alice = Session()

    assert_error(alice.upload(b""), 400, "invalid_blob")
    assert not Blob.objects.exists()


@pytest.mark.parametrize(
    ("blob", "status", "code"),
    [
        pytest.param(
            hashlib.sha256(b"never uploaded").hexdigest(), 404, "unknown_blob", id="unknown"
        ),
        pytest.param(blob_id(CIPHERTEXT).upper(), 400, "invalid_blob_id", id="uppercase"),
        pytest.param(blob_id(CIPHERTEXT)[:63], 400, "invalid_blob_id", id="short"),
        pytest.param(blob_id(CIPHERTEXT) + "0", 400, "invalid_blob_id", id="long"),
        pytest.param("g" * 64, 400, "invalid_blob_id", id="not hex"),
        pytest.param("..", 400, "invalid_blob_id", id="dots"),
    ],
)
def test_download_failures(blob: str, status: int, code: str) -> None:
    alice = Session()
    alice.upload(CIPHERTEXT)

    assert_error(alice.get(f"/blobs/{blob}"), status, code)


def test_the_quota_of_stored_bytes(settings: Any) -> None:
    settings.VEILPOST_BLOB_QUOTA_BYTES = 100
    alice, bob = Session(), Session()
    assert alice.upload(b"1" * 60).status_code == 201

    body = assert_error(alice.upload(b"2" * 41), 409, "quota_exceeded")

    assert (body["limit"], body["used"]) == (100, 60)
    assert alice.upload(b"3" * 40).status_code == 201  # exactly the quota
    assert alice.upload(b"1" * 60).status_code == 200  # bytes it already has cost nothing
    assert bob.upload(b"2" * 41).status_code == 201  # the quota is per installation
    assert Blob.objects.filter(uploaded_by=alice.id).count() == 2


def test_uploads_are_rate_limited(settings: Any) -> None:
    settings.VEILPOST_BLOB_RATE = 0.001
    settings.VEILPOST_BLOB_BURST = 2
    alice, bob = Session(), Session()
    assert alice.upload(b"one").status_code == 201
    assert alice.upload(b"one").status_code == 200  # a repeated upload takes a token too

    body = assert_error(alice.upload(b"three"), 429, "rate_limited")

    assert body["retry_after"] > 0
    assert bob.upload(b"three").status_code == 201  # another installation's bucket
    assert Blob.objects.count() == 2


def test_blob_endpoints_need_a_token() -> None:
    client = Client(HTTP_HOST=HOST)

    assert_error(
        client.post(f"{API}/blobs", b"data", content_type="application/octet-stream"),
        401,
        "unauthorized",
    )
    assert_error(client.get(f"{API}/blobs/{blob_id(b'data')}"), 401, "unauthorized")
    assert not Blob.objects.exists()


def test_prune_deletes_blobs_older_than_the_retention_period() -> None:
    alice = Session()
    old, new = alice.upload(b"old").json()["id"], alice.upload(b"new").json()["id"]
    Blob.objects.filter(pk=old).update(created_at=timezone.now() - timedelta(days=40))

    assert prune(None).blobs == 0  # no retention period: every blob stays
    out = StringIO()
    call_command("prune", stdout=out)  # VEILPOST_RETENTION_DAYS: 30

    assert "blobs older than 30 days: 1 deleted" in out.getvalue()
    assert list(Blob.objects.values_list("pk", flat=True)) == [new]
    assert_error(alice.get(f"/blobs/{old}"), 404, "unknown_blob")
    assert alice.upload(b"old").status_code == 201  # it can be uploaded again
    assert (stats()["blobs"], stats()["blob_bytes"]) == (2, 6)


# --- Through the ASGI application, as Daphne runs it -----------------------------------------


async def asgi_upload(data: bytes, extra_headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    installation = await database_sync_to_async(auth.register_first_installation)(
        Device().public_key
    )
    token = await database_sync_to_async(auth.issue_token)(installation)
    headers = [
        (b"host", HOST.encode()),
        (b"authorization", f"Bearer {token.token}".encode()),
        (b"content-type", b"application/octet-stream"),
        *extra_headers,
    ]
    communicator = HttpCommunicator(application, "POST", f"{API}/blobs", data, headers)
    response: dict[str, Any] = await communicator.get_response(timeout=10)
    return response


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_asgi_accepts_a_blob_over_djangos_json_body_limit(settings: Any) -> None:
    data = b"\xa5" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)

    response = await asgi_upload(data, [(b"content-length", str(len(data)).encode())])

    assert response["status"] == 201, response["body"][:500]
    assert await database_sync_to_async(Blob.objects.filter(pk=blob_id(data)).exists)()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_asgi_body_longer_than_declared_is_too_large(settings: Any) -> None:
    settings.VEILPOST_MAX_BLOB_BYTES = 1024

    response = await asgi_upload(b"x" * 2000, [(b"content-length", b"10")])

    assert response["status"] == 413, response["body"][:500]
    assert b'"too_large"' in response["body"]
    assert not await database_sync_to_async(Blob.objects.exists)()
