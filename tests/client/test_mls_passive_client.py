"""The working group's passive-client vectors (README "Passive Client Scenarios").

A client joins from a Welcome (tree in the Welcome or out of band, with and without external
PSKs), then follows commits of every kind — Add, Remove, Update, PSK, GroupContextExtensions,
by value and by reference, with and without a path — through :meth:`Group.process`, and must
reach the expected epoch authenticator each time. Both files run in full on every backend:
they take about a second on the pure one.
"""

from __future__ import annotations

import pytest
from mls_vectors import run_vector_file

from veilpost.crypto import CryptoBackend
from veilpost.mls.vectors import CHECKERS
from veilpost.mls.vectors.passive_client import check_passive_client


@pytest.mark.parametrize("name", ["passive-client-welcome", "passive-client-handling-commit"])
def test_passive_client_vectors(backend: CryptoBackend, name: str) -> None:
    assert CHECKERS["passive-client"] is check_passive_client
    assert {1, 3} <= run_vector_file("passive-client", backend, file=f"{name}.json")
