"""The Commit (RFC 9420 §12.4): the proposals a new epoch applies, and an optional path.

``proposals`` lists :class:`~veilpost.mls.proposals.ProposalOrRef` values in order (their
order fixes, for example, where added members land); ``path`` is the committer's
:class:`~veilpost.mls.update_path.UpdatePath`, required or forbidden depending on the
proposals (§12.4 — checked when the commit is processed, not here).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from veilpost.codec import Reader, Writer
from veilpost.mls.proposals import ProposalOrRef
from veilpost.mls.update_path import UpdatePath


@dataclass(frozen=True)
class Commit:
    """``struct { ProposalOrRef proposals<V>; optional<UpdatePath> path; } Commit``."""

    proposals: list[ProposalOrRef] = field(default_factory=list)
    path: UpdatePath | None = None

    def encode(self, writer: Writer) -> None:
        writer.struct_vector(self.proposals)
        writer.optional_struct(self.path)

    @classmethod
    def decode(cls, reader: Reader) -> Commit:
        return cls(
            reader.vector(ProposalOrRef.decode, "Commit.proposals"),
            reader.optional(UpdatePath.decode, "Commit.path"),
        )
