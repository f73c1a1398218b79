"""Veilpost: end-to-end-encrypted messaging for people and AI agents on MLS (RFC 9420).

The package is layered bottom to top (see ``DESIGN.md``): :mod:`veilpost.codec` (the TLS
presentation language), :mod:`veilpost.crypto` (cipher suites, HPKE and the MLS labelled
helpers). Everything imports only the standard library, except the optional native crypto
backend, which uses pyca/cryptography when it is installed.
"""

__version__ = "0.1.0"
