"""The crypto provider: one backend plus the source of randomness.

Everything above the primitives takes a :class:`CryptoProvider` rather than calling a backend
or ``secrets`` directly, so that tests can inject deterministic randomness and the browser and
CPython run identical code with different backends.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from veilpost.crypto.backend import CryptoBackend, get_backend

RandomSource = Callable[[int], bytes]


class CryptoProvider:
    """A crypto backend together with a random source.

    ``backend`` is a backend object, a backend name (``"native"`` or ``"pure"``) or ``None``
    for automatic selection (see :func:`veilpost.crypto.backend.get_backend`). ``random``
    returns ``n`` random bytes; it defaults to :func:`secrets.token_bytes` (the operating
    system's CSPRNG; ``crypto.getRandomValues`` in Pyodide).
    """

    __slots__ = ("_random", "backend")

    def __init__(
        self, backend: CryptoBackend | str | None = None, random: RandomSource | None = None
    ) -> None:
        self.backend: CryptoBackend = (
            backend
            if backend is not None and not isinstance(backend, str)
            else get_backend(backend)
        )
        self._random = random or secrets.token_bytes

    def random_bytes(self, size: int) -> bytes:
        """Return ``size`` random bytes from this provider's random source."""
        data = self._random(size)
        if len(data) != size:
            raise ValueError(f"random source returned {len(data)} bytes, {size} requested")
        return data

    def __repr__(self) -> str:
        return f"CryptoProvider(backend={self.backend.name!r})"


def get_provider(
    backend: CryptoBackend | str | None = None, random: RandomSource | None = None
) -> CryptoProvider:
    """Return a provider for ``backend`` (default: automatic selection) and ``random``."""
    return CryptoProvider(backend, random)
