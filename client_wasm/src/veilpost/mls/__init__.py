"""RFC 9420 (Messaging Layer Security), sans-I/O.

Bytes go in, state transitions and bytes come out: no sockets, no clock, no randomness except
through the crypto provider. Modules are named after the RFC's concepts; each docstring names
its section. Untrusted input is decoded into wire structs (:mod:`veilpost.codec`), then
validated before it changes any state.

The public API is :class:`Group` (:mod:`veilpost.mls.group`) and what it takes and returns::

    from veilpost.crypto import CipherSuite
    from veilpost.mls import Group, SigningIdentity, StagedCommit, make_key_package

    suite = CipherSuite(0x0001)
    alice = Group.create(suite, SigningIdentity.generate(suite, b"alice"))

    bob_id = SigningIdentity.generate(suite, b"bob")
    bob_kp = make_key_package(suite, bob_id, now=1_750_000_000)  # publish bob_kp.to_message()

    output = alice.commit(add=[bob_kp.key_package])   # pending until the relay accepts it
    alice.merge_pending_commit()                        # (or: alice.process(output.commit))
    bob = Group.join_from_welcome(output.welcome, bob_kp)

    event = bob.process(alice.encrypt(b"hello"))        # ApplicationMessage(data=b"hello", …)
    staged = alice.process(bob.commit(update=True).commit)
    if isinstance(staged, StagedCommit):
        alice.merge_staged_commit(staged)
    bob.merge_pending_commit()
    assert alice.epoch_authenticator == bob.epoch_authenticator

    saved = alice.to_bytes()                            # store encrypted
    alice = Group.from_bytes(saved)

Every refusal of a peer's message is a :class:`ProtocolError` (usually
:class:`ValidationError`) whose ``check`` names the rule, with the RFC section; malformed bytes
are a :class:`~veilpost.codec.DecodeError`; misuse of the API is a :class:`UsageError`.
"""

from veilpost.mls.credential import Credential
from veilpost.mls.errors import MlsError, ProtocolError, UsageError, ValidationError
from veilpost.mls.events import (
    ApplicationMessage,
    CommitOutput,
    Event,
    Member,
    OwnMessage,
    ProposalReceived,
    StagedCommit,
)
from veilpost.mls.extensions import Extension, ExtensionType
from veilpost.mls.group import Group
from veilpost.mls.group_config import GroupConfig
from veilpost.mls.group_state import GroupStateVersionError
from veilpost.mls.proposal_list import ProposalListError
from veilpost.mls.signing_identity import KeyPackageBundle, SigningIdentity, make_key_package

__all__ = [
    "ApplicationMessage",
    "CommitOutput",
    "Credential",
    "Event",
    "Extension",
    "ExtensionType",
    "Group",
    "GroupConfig",
    "GroupStateVersionError",
    "KeyPackageBundle",
    "Member",
    "MlsError",
    "OwnMessage",
    "ProposalListError",
    "ProposalReceived",
    "ProtocolError",
    "SigningIdentity",
    "StagedCommit",
    "UsageError",
    "ValidationError",
    "make_key_package",
]
