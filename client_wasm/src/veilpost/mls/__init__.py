"""RFC 9420 (Messaging Layer Security), sans-I/O.

Bytes go in, state transitions and bytes come out: no sockets, no clock, no randomness except
through the crypto provider. Modules are named after the RFC's concepts; each docstring names
its section. Untrusted input is decoded into wire structs (:mod:`veilpost.codec`), then
validated before it changes any state.
"""
