"""Schemathesis over the REST API's OpenAPI schema: whatever it sends, never a 5xx.

Requests go in-process to the WSGI application (the same Django views Daphne serves), as an
authenticated installation so that generated requests get past the bearer check and into the
endpoints. Examples per operation are bounded to keep the run short.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from django.test import Client
from hypothesis import HealthCheck, given, settings
from relay_support import Device, b64, unb64
from schemathesis.core.result import Err

MAX_EXAMPLES = 50

# Transactional: each request, as in production, closes its database connection when it ends.
pytestmark = pytest.mark.django_db(transaction=True)


SCHEMA = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())


def _operations() -> list[Any]:
    operations = []
    for result in SCHEMA.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the schema itself is broken: that is a failure too
        operations.append(result.ok())
    return operations


OPERATIONS = _operations()


@pytest.fixture
def bearer() -> dict[str, str]:
    client = Client(HTTP_HOST="localhost")
    challenge = client.post("/api/v1/auth/challenge", content_type="application/json").json()
    device = Device()
    body = {
        "nonce": challenge["nonce"],
        "public_key": b64(device.public_key),
        "signature": b64(device.answer(unb64(challenge["nonce"]), challenge["audience"])),
    }
    response = client.post("/api/v1/auth/token", body, content_type="application/json")
    assert response.status_code == 201, response.content
    return {"Authorization": f"Bearer {response.json()['token']}"}


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.label)
def test_no_request_gets_a_5xx(operation: Any, bearer: dict[str, str]) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case: Any) -> None:
        response = case.call(headers=bearer)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
        )

    check()
