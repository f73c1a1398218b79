"""The REST API at /api/v1 through ninja's TestClient: every endpoint, its auth, its errors."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from ninja.testing import TestClient
from relay_support import HOST, Device, b64, private_message, unb64

from webapp.api import api
from webapp.relay import delivery
from webapp.relay.identifiers import group_topic, identity_record_message
from webapp.relay.models import AuthToken, Installation, KeyPackage

pytestmark = pytest.mark.django_db

GROUP = b"rest-group"
TOPIC = group_topic(GROUP)


@pytest.fixture
def client() -> TestClient:
    return TestClient(api, headers={"HOST": HOST})


def token_for(client: TestClient, device: Device) -> str:
    challenge = client.post("/auth/challenge").json()
    response = client.post(
        "/auth/token",
        json={
            "nonce": challenge["nonce"],
            "public_key": b64(device.public_key),
            "signature": b64(device.answer(unb64(challenge["nonce"]), challenge["audience"])),
        },
    )
    assert response.status_code == 201, response.json()
    return str(response.json()["token"])


class Session:
    """A device with a bearer token."""

    def __init__(self, client: TestClient, device: Device | None = None) -> None:
        self.client = client
        self.device = device or Device()
        self.token = token_for(client, self.device)

    @property
    def id(self) -> str:
        return self.device.installation_id

    @property
    def installation(self) -> Installation:
        return Installation.objects.get(pk=self.id)

    def headers(self) -> dict[str, str]:
        return {"AUTHORIZATION": f"Bearer {self.token}"}

    def get(self, path: str) -> Any:
        return self.client.get(path, headers=self.headers())

    def post(self, path: str, body: Any = None) -> Any:
        return self.client.post(path, json=body, headers=self.headers())

    def put(self, path: str, body: Any) -> Any:
        return self.client.put(path, json=body, headers=self.headers())

    def delete(self, path: str) -> Any:
        return self.client.delete(path, headers=self.headers())


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.json()
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body


# --- Authentication ---------------------------------------------------------------------------


def test_token_by_challenge_response(client: TestClient) -> None:
    device = Device()
    challenge = client.post("/auth/challenge")
    assert challenge.status_code == 201
    assert challenge.json()["audience"] == HOST

    token = token_for(client, device)
    me = client.get("/installations/me", headers={"AUTHORIZATION": f"Bearer {token}"})

    assert me.status_code == 200
    assert me.json()["installation_id"] == device.installation_id
    assert me.json()["inbox_id"] == device.installation_id
    assert unb64(me.json()["public_key"]) == device.public_key
    assert AuthToken.objects.get().digest != token  # only a digest is stored


def test_token_challenge_is_single_use(client: TestClient) -> None:
    device = Device()
    nonce = client.post("/auth/challenge").json()["nonce"]
    body = {
        "nonce": nonce,
        "public_key": b64(device.public_key),
        "signature": b64(device.answer(unb64(nonce))),
    }
    assert client.post("/auth/token", json=body).status_code == 201

    assert_error(client.post("/auth/token", json=body), 401, "challenge_used")


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"signature": b64(bytes(64))}, 401, "bad_signature"),
        ({"nonce": b64(bytes(32))}, 401, "unknown_challenge"),
        ({"public_key": b64(bytes(31))}, 400, "invalid_public_key"),
        ({"public_key": "not base64!"}, 400, "invalid_base64"),
        ({"signature": 12}, 422, "validation_error"),
    ],
)
def test_token_failures(client: TestClient, change: dict[str, Any], status: int, code: str) -> None:
    device = Device()
    nonce = client.post("/auth/challenge").json()["nonce"]
    body = {
        "nonce": nonce,
        "public_key": b64(device.public_key),
        "signature": b64(device.answer(unb64(nonce))),
        **change,
    }

    assert_error(client.post("/auth/token", json=body), status, code)
    assert not Installation.objects.exists()


def test_challenge_for_another_host_is_refused(client: TestClient) -> None:
    device = Device()
    nonce = client.post("/auth/challenge").json()["nonce"]
    body = {
        "nonce": nonce,
        "public_key": b64(device.public_key),
        "signature": b64(device.answer(unb64(nonce), "localhost")),
    }

    response = client.post("/auth/token", json=body, headers={"HOST": "localhost"})

    assert_error(response, 401, "wrong_audience")


def test_host_we_do_not_serve_gets_no_challenge(client: TestClient) -> None:
    assert_error(
        client.post("/auth/challenge", headers={"HOST": "evil.example"}), 400, "invalid_host"
    )


def test_endpoints_need_a_token(client: TestClient) -> None:
    assert_error(client.get("/conversations"), 401, "unauthorized")
    assert_error(
        client.get("/conversations", headers={"AUTHORIZATION": "Bearer nope"}), 401, "invalid_token"
    )


def test_expired_token_is_refused(client: TestClient) -> None:
    session = Session(client)
    AuthToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    assert_error(session.get("/conversations"), 401, "token_expired")


# --- Installations and identity records --------------------------------------------------


def test_admitting_a_second_device_into_the_inbox(client: TestClient) -> None:
    laptop = Session(client)
    phone = Device()

    admitted = laptop.post("/installations", {"public_key": b64(phone.public_key)})
    assert admitted.status_code == 201
    assert admitted.json()["admitted_by"] == laptop.id
    phone_session = Session(client, phone)

    inbox = phone_session.get(f"/inboxes/{laptop.id}").json()
    assert [i["installation_id"] for i in inbox["installations"]] == [
        laptop.id,
        phone.installation_id,
    ]
    assert phone_session.get("/installations/me").json()["inbox_id"] == laptop.id
    assert_error(
        laptop.post("/installations", {"public_key": b64(phone.public_key)}),
        409,
        "installation_exists",
    )


def test_revoking_an_installation(client: TestClient) -> None:
    laptop, stranger = Session(client), Session(client)
    phone = Device()
    laptop.post("/installations", {"public_key": b64(phone.public_key)})
    phone_session = Session(client, phone)

    assert_error(stranger.delete(f"/installations/{phone.installation_id}"), 403, "not_your_inbox")
    assert laptop.delete(f"/installations/{phone.installation_id}").status_code == 204

    assert_error(phone_session.get("/installations/me"), 401, "invalid_token")  # tokens deleted
    assert_error(
        client.post("/auth/token", json=_answer(client, phone)), 403, "installation_revoked"
    )
    assert laptop.get(f"/installations/{phone.installation_id}").json()["revoked_at"]


def _answer(client: TestClient, device: Device) -> dict[str, str]:
    nonce = client.post("/auth/challenge").json()["nonce"]
    return {
        "nonce": nonce,
        "public_key": b64(device.public_key),
        "signature": b64(device.answer(unb64(nonce))),
    }


def test_unknown_installation_and_inbox(client: TestClient) -> None:
    session = Session(client)
    unknown = Device().installation_id

    assert_error(session.get(f"/installations/{unknown}"), 404, "unknown_installation")
    assert_error(session.get(f"/inboxes/{unknown}"), 404, "unknown_inbox")
    assert_error(session.get("/inboxes/NOT-AN-ID"), 400, "invalid_installation_id")


def record_body(device: Device, inbox_id: str, version: int, record: bytes) -> dict[str, Any]:
    signature = device.sign(identity_record_message(inbox_id, version, record))
    return {"version": version, "record": b64(record), "signature": b64(signature)}


def test_identity_record_is_verified_stored_and_served(client: TestClient) -> None:
    alice, bob = Session(client), Session(client)
    path = f"/inboxes/{alice.id}/identity-record"

    assert_error(bob.get(path), 404, "unknown_identity_record")
    stored = alice.put(path, record_body(alice.device, alice.id, 1, b"record v1"))
    assert stored.status_code == 201
    alice.put(path, record_body(alice.device, alice.id, 2, b"record v2"))

    latest = bob.get(path).json()
    assert (latest["version"], unb64(latest["record"])) == (2, b"record v2")
    assert latest["signed_by"] == alice.id
    assert unb64(latest["signer_public_key"]) == alice.device.public_key
    assert unb64(bob.get(f"{path}?version=1").json()["record"]) == b"record v1"
    assert_error(bob.get(f"{path}?version={10**30}"), 422, "validation_error")
    assert_error(bob.get(f"{path}?version=3"), 404, "unknown_identity_record")
    assert bob.get(f"/inboxes/{alice.id}").json()["identity_record_version"] == 2


def test_identity_record_failures(client: TestClient) -> None:
    alice, bob = Session(client), Session(client)
    path = f"/inboxes/{alice.id}/identity-record"
    alice.put(path, record_body(alice.device, alice.id, 5, b"v5"))

    assert_error(
        alice.put(path, record_body(alice.device, alice.id, 5, b"again")), 409, "version_conflict"
    )
    assert_error(
        alice.put(path, record_body(alice.device, alice.id, 4, b"older")), 409, "version_conflict"
    )
    assert_error(
        alice.put(path, record_body(bob.device, alice.id, 6, b"forged")), 400, "bad_signature"
    )
    # signed over another version than the one claimed: the relay cannot be fooled into a rollback
    replay = record_body(alice.device, alice.id, 5, b"v5") | {"version": 9}
    assert_error(alice.put(path, replay), 400, "bad_signature")
    assert_error(
        bob.put(path, record_body(bob.device, alice.id, 6, b"not mine")), 403, "not_your_inbox"
    )
    assert_error(
        alice.put(path, record_body(alice.device, alice.id, 0, b"zero")), 400, "invalid_version"
    )
    assert bob.get(path).json()["version"] == 5


# --- Key packages -----------------------------------------------------------------------------


def upload(session: Session, count: int, last_resort: bool = False) -> Any:
    items: list[dict[str, Any]] = [
        {"key_package": b64(session.device.key_package())} for _ in range(count)
    ]
    if last_resort:
        items.append({"key_package": b64(session.device.key_package()), "last_resort": True})
    return session.post("/key-packages", {"key_packages": items})


def test_key_packages_upload_count_claim_and_last_resort(client: TestClient) -> None:
    bob, alice = Session(client), Session(client)
    uploaded = upload(bob, 2, last_resort=True)
    assert uploaded.status_code == 201
    assert uploaded.json() == {"remaining": 2, "last_resort": True}
    uploaded_packages = list(
        KeyPackage.objects.order_by("id").values_list("key_package", flat=True)
    )

    claims = [alice.post(f"/inboxes/{bob.id}/key-packages/claim").json() for _ in range(4)]

    handed = [
        (unb64(c["key_packages"][0]["key_package"]), c["key_packages"][0]["last_resort"])
        for c in claims
    ]
    assert handed == [
        (bytes(uploaded_packages[0]), False),
        (bytes(uploaded_packages[1]), False),
        (bytes(uploaded_packages[2]), True),
        (bytes(uploaded_packages[2]), True),  # the last resort stays
    ]
    assert bob.get("/key-packages/count").json() == {"remaining": 0, "last_resort": True}


def test_claim_gives_one_per_installation_of_the_inbox(client: TestClient) -> None:
    laptop, alice = Session(client), Session(client)
    phone = Device()
    laptop.post("/installations", {"public_key": b64(phone.public_key)})
    phone_session = Session(client, phone)
    upload(laptop, 1)

    claim = alice.post(f"/inboxes/{laptop.id}/key-packages/claim").json()
    own = phone_session.post(f"/inboxes/{laptop.id}/key-packages/claim").json()

    by_installation = {c["installation_id"]: c["key_package"] for c in claim["key_packages"]}
    assert set(by_installation) == {laptop.id, phone.installation_id}
    assert by_installation[laptop.id] is not None
    assert by_installation[phone.installation_id] is None  # uploaded none
    # a device claiming for its own inbox gets its other devices' packages, never its own
    assert [c["installation_id"] for c in own["key_packages"]] == [laptop.id]


def test_key_package_upload_failures(client: TestClient) -> None:
    bob, alice = Session(client), Session(client)

    assert_error(
        bob.post(
            "/key-packages", {"key_packages": [{"key_package": b64(alice.device.key_package())}]}
        ),
        400,
        "key_package_not_yours",
    )
    assert_error(
        bob.post("/key-packages", {"key_packages": [{"key_package": b64(b"junk")}]}),
        400,
        "invalid_key_package",
    )
    assert_error(
        bob.post(
            "/key-packages",
            {"key_packages": [{"key_package": b64(private_message(GROUP))}]},
        ),
        400,
        "invalid_key_package",
    )
    assert_error(bob.post("/key-packages", {"key_packages": []}), 400, "invalid_batch")
    two_last_resorts = [
        {"key_package": b64(bob.device.key_package()), "last_resort": True} for _ in range(2)
    ]
    assert_error(
        bob.post("/key-packages", {"key_packages": two_last_resorts}), 400, "invalid_batch"
    )
    assert_error(bob.post("/key-packages", {"key_packages": "nope"}), 422, "validation_error")
    assert not KeyPackage.objects.exists()


def test_claim_rate_limit(client: TestClient, settings: Any) -> None:
    settings.VEILPOST_CLAIM_RATE = 0.001
    settings.VEILPOST_CLAIM_BURST = 1
    bob, alice = Session(client), Session(client)
    alice.post(f"/inboxes/{bob.id}/key-packages/claim")

    body = assert_error(alice.post(f"/inboxes/{bob.id}/key-packages/claim"), 429, "rate_limited")
    assert body["retry_after"] > 0


# --- Conversations and history -------------------------------------------------------------


def test_conversations_list_unread_and_read_cursor(client: TestClient) -> None:
    alice = Session(client)
    quiet, busy = group_topic(b"quiet"), group_topic(b"busy")
    assert alice.post("/conversations", {"topic": quiet}).status_code == 201
    for i in range(3):
        delivery.publish(alice.installation, busy, f"b{i}", private_message(b"busy"))

    listing = alice.get("/conversations").json()
    rows = {c["topic"]: c for c in listing["conversations"]}
    assert [c["topic"] for c in listing["conversations"]] == [
        busy,
        quiet,
        alice.device.welcome_topic,
    ]
    assert (rows[busy]["last_sequence"], rows[busy]["unread"], rows[busy]["kind"]) == (
        3,
        3,
        "group",
    )
    assert rows[alice.device.welcome_topic]["kind"] == "welcome"
    assert listing["next_cursor"] is None

    moved = alice.put(f"/conversations/{busy}/read-cursor", {"sequence": 2}).json()
    assert (moved["read_cursor"], moved["unread"]) == (2, 1)
    back = alice.put(f"/conversations/{busy}/read-cursor", {"sequence": 1}).json()
    assert back["read_cursor"] == 2  # never backwards
    assert_error(
        alice.put(f"/conversations/{busy}/read-cursor", {"sequence": 4}), 400, "invalid_cursor"
    )


def test_conversations_paginate_by_opaque_cursor(client: TestClient) -> None:
    alice = Session(client)
    for i in range(7):
        alice.post("/conversations", {"topic": group_topic(f"g{i}".encode())})

    seen, cursor, pages = [], None, 0
    while True:
        path = "/conversations?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = alice.get(path).json()
        seen += [c["topic"] for c in page["conversations"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert pages == 3 and len(seen) == len(set(seen)) == 8  # 7 groups and the welcome inbox
    assert_error(alice.get("/conversations?cursor=forged"), 400, "invalid_cursor")
    assert_error(alice.get("/conversations?limit=0"), 422, "validation_error")


def test_leaving_and_joining(client: TestClient) -> None:
    alice = Session(client)
    alice.post("/conversations", {"topic": TOPIC})

    assert alice.delete(f"/conversations/{TOPIC}").status_code == 204
    assert_error(alice.get(f"/topics/{TOPIC}/envelopes"), 403, "not_a_member")
    assert_error(
        alice.delete(f"/conversations/{alice.device.welcome_topic}"), 400, "cannot_leave_welcome"
    )
    assert_error(alice.post("/conversations", {"topic": "nonsense"}), 400, "invalid_topic")
    assert_error(
        alice.post("/conversations", {"topic": Device().welcome_topic}), 403, "not_your_inbox"
    )


def test_history_pages_for_members_only(client: TestClient) -> None:
    alice, eve = Session(client), Session(client)
    for i in range(5):
        delivery.publish(alice.installation, TOPIC, f"m{i}", private_message(GROUP, 2))

    first = alice.get(f"/topics/{TOPIC}/envelopes?after=0&limit=2").json()
    second = alice.get(f"/topics/{TOPIC}/envelopes?after={first['next_after']}&limit=10").json()

    assert [e["sequence"] for e in first["envelopes"]] == [1, 2] and first["has_more"]
    assert [e["sequence"] for e in second["envelopes"]] == [3, 4, 5] and not second["has_more"]
    envelope = first["envelopes"][0]
    assert envelope["epoch"] == 2 and envelope["wire_format"] == "mls_private_message"
    assert unb64(envelope["payload"]) == private_message(GROUP, 2)
    assert "sender" not in envelope
    assert_error(eve.get(f"/topics/{TOPIC}/envelopes"), 403, "not_a_member")
    assert_error(alice.get(f"/topics/{TOPIC}/envelopes?after=-1"), 400, "invalid_cursor")
    assert_error(alice.get(f"/topics/{TOPIC}/envelopes?after={10**30}"), 400, "invalid_cursor")
    assert_error(
        alice.put(f"/conversations/{TOPIC}/read-cursor", {"sequence": 10**30}),
        400,
        "invalid_cursor",
    )
    assert_error(alice.get(f"/topics/{TOPIC}/envelopes?after=abc"), 422, "validation_error")
    assert_error(alice.get(f"/topics/{TOPIC}/envelopes?limit=501"), 422, "validation_error")
    assert_error(alice.get("/topics/group:bm9wZQ/envelopes"), 404, "unknown_topic")


def test_openapi_lists_every_endpoint(client: TestClient) -> None:
    schema = api.get_openapi_schema()
    paths = set(schema["paths"])

    assert paths >= {
        "/api/v1/health",
        "/api/v1/auth/challenge",
        "/api/v1/auth/token",
        "/api/v1/installations/me",
        "/api/v1/installations",
        "/api/v1/installations/{installation_id}",
        "/api/v1/inboxes/{inbox_id}",
        "/api/v1/inboxes/{inbox_id}/identity-record",
        "/api/v1/inboxes/{inbox_id}/key-packages/claim",
        "/api/v1/key-packages",
        "/api/v1/key-packages/count",
        "/api/v1/conversations",
        "/api/v1/conversations/{topic}",
        "/api/v1/conversations/{topic}/read-cursor",
        "/api/v1/topics/{topic}/envelopes",
    }
    assert "BearerToken" in schema["components"]["securitySchemes"]


# --- Through Django's whole stack (middleware, URL routing, body parsing) ------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("post", "/api/v1/auth/token", "{not json", 400, "bad_request"),
        ("post", "/api/v1/auth/token", "[1, 2]", 422, "validation_error"),
        ("post", "/api/v1/auth/token", '{"nonce": null}', 422, "validation_error"),
        ("post", "/api/v1/auth/token", "x" * (3 << 20), 413, "too_large"),
        ("get", "/api/v1/conversations", None, 401, "unauthorized"),
        ("put", "/api/v1/auth/token", "{}", 405, "method_not_allowed"),
    ],
)
def test_bad_requests_get_json_4xx(
    method: str, path: str, body: str | None, status: int, code: str
) -> None:
    from django.test import Client

    django_client = Client()
    if body is None:
        response = getattr(django_client, method)(path)
    else:
        response = getattr(django_client, method)(path, data=body, content_type="application/json")

    assert response.status_code == status
    assert response.json()["code"] == code
    if status == 405:
        assert response["Allow"] == "POST"


HOSTILE_VALUES = ["", "x" * 5000, "\x00", "é", "group:\x00", "group:" + "_" * 400, "-1", "1e999"]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_hostile_values_anywhere_get_json_4xx(value: str) -> None:
    """The same junk in every path parameter, query parameter and body field: never a 5xx.
    (A schemathesis run over the OpenAPI schema generalizes this.)"""
    from urllib.parse import quote

    from django.test import Client

    django_client = Client()
    token = Session(TestClient(api, headers={"HOST": "testserver"})).token
    auth_header = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    q = quote(value, safe="")
    requests: list[tuple[str, str, Any]] = [
        ("get", f"/api/v1/installations/{q}", None),
        ("delete", f"/api/v1/installations/{q}", None),
        ("get", f"/api/v1/inboxes/{q}", None),
        ("get", f"/api/v1/inboxes/{q}/identity-record?version={q}", None),
        ("put", f"/api/v1/inboxes/{q}/identity-record", {"version": value, "record": value}),
        ("post", f"/api/v1/inboxes/{q}/key-packages/claim", None),
        ("post", "/api/v1/key-packages", {"key_packages": [{"key_package": value}]}),
        ("get", f"/api/v1/conversations?cursor={q}&limit={q}", None),
        ("post", "/api/v1/conversations", {"topic": value}),
        ("delete", f"/api/v1/conversations/{q}", None),
        ("put", f"/api/v1/conversations/{q}/read-cursor", {"sequence": value}),
        ("get", f"/api/v1/topics/{q}/envelopes?after={q}&limit={q}", None),
        ("post", "/api/v1/installations", {"public_key": value}),
        ("post", "/api/v1/auth/token", {"nonce": value, "public_key": value, "signature": value}),
    ]
    for method, path, body in requests:
        send = getattr(django_client, method)
        if body is None:
            response = send(path, **auth_header)
        else:
            response = send(path, body, content_type="application/json", **auth_header)
        assert 400 <= response.status_code < 500, (method, path, response.status_code)
        assert response["Content-Type"].startswith("application/json"), (method, path)
