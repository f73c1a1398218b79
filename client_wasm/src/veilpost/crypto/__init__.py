"""The crypto layer: cipher suites, HPKE and the MLS labelled helpers on one provider seam.

Typical use::

    from veilpost.crypto import get_cipher_suite

    suite = get_cipher_suite(0x0001)          # automatic backend, OS randomness
    secret = suite.derive_secret(epoch_secret, "sender data")

See :mod:`veilpost.crypto.backend` for backend selection (``native`` or ``pure``, and the
``VEILPOST_CRYPTO_BACKEND`` environment variable).
"""

from veilpost.crypto.backend import Aead, CryptoBackend, get_backend, native_available
from veilpost.crypto.cipher_suite import (
    SUPPORTED_CIPHER_SUITES,
    CipherSuite,
    CipherSuiteId,
    get_cipher_suite,
)
from veilpost.crypto.errors import (
    AeadAuthenticationError,
    CryptoError,
    HpkeError,
    InvalidKeyError,
    KeyAgreementError,
    SignatureVerificationError,
    UnsupportedError,
)
from veilpost.crypto.hpke import Hpke
from veilpost.crypto.provider import CryptoProvider, get_provider

__all__ = [
    "SUPPORTED_CIPHER_SUITES",
    "Aead",
    "AeadAuthenticationError",
    "CipherSuite",
    "CipherSuiteId",
    "CryptoBackend",
    "CryptoError",
    "CryptoProvider",
    "Hpke",
    "HpkeError",
    "InvalidKeyError",
    "KeyAgreementError",
    "SignatureVerificationError",
    "UnsupportedError",
    "get_backend",
    "get_cipher_suite",
    "get_provider",
    "native_available",
]
