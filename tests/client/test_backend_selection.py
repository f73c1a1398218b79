"""Choosing a crypto backend: by argument, by VEILPOST_CRYPTO_BACKEND, or automatically."""

from __future__ import annotations

import pytest
from support import BACKENDS, IN_PYODIDE

from veilpost.crypto import CryptoProvider, UnsupportedError, get_backend, get_cipher_suite
from veilpost.crypto.backend import ENV_VAR


def test_argument_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "native" if "native" in BACKENDS else "nonexistent")
    assert get_backend("pure").name == "pure"
    assert CryptoProvider("pure").backend.name == "pure"


@pytest.mark.parametrize("name", BACKENDS)
def test_environment_variable_selects(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(ENV_VAR, f" {name.upper()} ")
    assert get_backend().name == name
    assert get_cipher_suite(1).provider.backend.name == name


def test_automatic_prefers_native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert get_backend().name == BACKENDS[0]
    if IN_PYODIDE:
        assert get_backend().name == "pure"


def test_unknown_backend_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UnsupportedError, match="unknown crypto backend 'rust'; choose one of"):
        get_backend("rust")
    monkeypatch.setenv(ENV_VAR, "openssl")
    with pytest.raises(UnsupportedError, match="unknown crypto backend 'openssl'"):
        get_backend()


@pytest.mark.skipif("native" in BACKENDS, reason="only where cryptography is missing")
def test_native_without_cryptography_says_how_to_install() -> None:
    with pytest.raises(UnsupportedError, match=r"pip install 'veilpost\[native\]'"):
        get_backend("native")
