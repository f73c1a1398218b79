"""The private-records data set and the MCP server that serves it (used by
``private_records_agent.py``; no Veilpost here: the same server would run over stdio).

The records are contracts between invented companies (``records.json``: every name, country
and figure is fictional). :class:`RecordSet` searches, fetches and counts them;
:func:`build_server` makes the ``mcp`` server with the tools ``search_records``,
``get_record`` and ``count_records``; :func:`answer_text` answers the plain-text commands a
person types in the web chat (``search <words>``, ``record <id>``, ``counts [by]``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

__all__ = [
    "DATA",
    "ContractRecord",
    "Counts",
    "RecordHit",
    "RecordSet",
    "SearchResult",
    "answer_text",
    "build_server",
]

DATA = Path(__file__).with_name("records.json")
"""The bundled, fictional data set."""

CountBy = Literal["status", "kind", "jurisdiction", "clause"]
_COUNT_BY: dict[str, CountBy] = {
    "status": "status",
    "kind": "kind",
    "jurisdiction": "jurisdiction",
    "clause": "clause",
}
_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


class ContractRecord(BaseModel):
    """One (fictional) contract."""

    id: str = Field(description="record id, e.g. PR-1001")
    title: str
    kind: str = Field(description="e.g. supply agreement, software licence, office lease")
    parties: list[str]
    jurisdiction: str
    status: str = Field(description="active, expired, terminated or in negotiation")
    effective: str = Field(description="ISO date")
    expires: str | None = Field(description="ISO date, or null for no fixed end")
    value_eur: int
    clauses: list[str]
    summary: str


class RecordHit(BaseModel):
    """A search hit: enough to choose which record to fetch."""

    id: str
    title: str
    kind: str
    status: str
    jurisdiction: str
    score: int = Field(description="how often the query's words occur (title and clauses x3)")


class SearchResult(BaseModel):
    """The hits of a search, best first."""

    query: str
    total: int = Field(description="how many records match (hits holds at most `limit`)")
    hits: list[RecordHit]


class Counts(BaseModel):
    """How many records there are per value of one field."""

    by: str
    total: int
    counts: dict[str, int]


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class RecordSet:
    """The records, searchable."""

    notice: str
    records: tuple[ContractRecord, ...]

    @classmethod
    def load(cls, path: Path | str = DATA) -> RecordSet:
        """Read a data set (``{"notice": ..., "records": [...]}``)."""
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        records = tuple(ContractRecord.model_validate(item) for item in raw["records"])
        ids = [r.id for r in records]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{path}: record ids are not unique")
        return cls(str(raw.get("notice", "")), records)

    def search(
        self, query: str, *, limit: int = 10, status: str | None = None, kind: str | None = None
    ) -> SearchResult:
        """Records containing every word of ``query`` (in any field), best first."""
        terms = _words(query)
        scored: list[tuple[int, ContractRecord]] = []
        for record in self.records:
            if (status and record.status != status) or (kind and record.kind != kind):
                continue
            strong = _words(" ".join([record.id, record.title, *record.clauses]))
            weak = _words(
                " ".join([record.kind, *record.parties, record.jurisdiction, record.status])
                + " "
                + record.summary
            )
            if not all(term in strong or term in weak for term in terms):
                continue
            score = sum(3 * strong.count(t) + weak.count(t) for t in terms)
            scored.append((score, record))
        scored.sort(key=lambda pair: (-pair[0], pair[1].id))
        hits = [
            RecordHit(
                id=r.id,
                title=r.title,
                kind=r.kind,
                status=r.status,
                jurisdiction=r.jurisdiction,
                score=score,
            )
            for score, r in scored[: max(0, limit)]
        ]
        return SearchResult(query=query, total=len(scored), hits=hits)

    def get(self, record_id: str) -> ContractRecord | None:
        """The record ``record_id`` (any case), or ``None``."""
        wanted = record_id.strip().upper()
        return next((r for r in self.records if r.id == wanted), None)

    def counts(self, by: CountBy = "status") -> Counts:
        """How many records per status, kind, jurisdiction, or clause."""
        if by == "clause":
            counter = Counter(c for r in self.records for c in r.clauses)
        else:
            counter = Counter(getattr(r, by) for r in self.records)
        ordered = dict(sorted(counter.items(), key=lambda item: (-item[1], item[0])))
        return Counts(by=by, total=len(self.records), counts=ordered)


def build_server(records: RecordSet) -> MCPServer:
    """The MCP server of ``records``: tools ``search_records``, ``get_record`` and
    ``count_records``, with structured results."""
    server = MCPServer(
        "private-records",
        instructions="Fictional contracts. search_records finds them by words, get_record"
        " fetches one by id (PR-1001 …), count_records summarises.",
    )

    @server.tool()
    def search_records(
        query: str, limit: int = 10, status: str | None = None, kind: str | None = None
    ) -> SearchResult:
        """Find contracts containing every word of `query` (parties, clauses, summary, …),
        optionally only of one `status` (active, expired, terminated, in negotiation) or
        `kind` (e.g. "software licence"); at most `limit` hits, best first."""
        if not 1 <= limit <= 50:
            raise ToolError(f"limit must be 1..50, got {limit}")
        return records.search(query, limit=limit, status=status, kind=kind)

    @server.tool()
    def get_record(record_id: str) -> ContractRecord:
        """Fetch one contract by its id (e.g. PR-1001)."""
        record = records.get(record_id)
        if record is None:
            raise ToolError(f"no record {record_id!r}: ids look like PR-1001 (see search_records)")
        return record

    @server.tool()
    def count_records(by: CountBy = "status") -> Counts:
        """Count the contracts per status, kind, jurisdiction or clause."""
        return records.counts(by)

    return server


HELP = (
    "I answer questions about a set of fictional contracts. Commands:\n"
    "  search <words>   contracts containing all the words\n"
    "  record <id>      one contract, e.g. record PR-1001\n"
    "  counts [by]      how many per status, kind, jurisdiction or clause"
)


def answer_text(records: RecordSet, text: str) -> str:
    """The answer to a chat message: one of the commands of :data:`HELP`, else the help."""
    command, _, rest = text.strip().partition(" ")
    command, rest = command.lower(), rest.strip()
    if command == "search" and rest:
        found = records.search(rest, limit=5)
        if not found.total:
            return f"No contract contains all of: {rest}"
        lines = [f"{found.total} contract(s) match; the best {len(found.hits)}:"]
        lines += [f"{hit.id}  {hit.title} ({hit.status})" for hit in found.hits]
        return "\n".join(lines)
    if command == "record" and rest:
        record = records.get(rest)
        if record is None:
            return f"No record {rest!r}: ids look like PR-1001."
        expires = record.expires or "no fixed end"
        return (
            f"{record.id}: {record.title}\n"
            f"{record.kind}, {record.status}; {record.jurisdiction} law;"
            f" {record.effective} to {expires}; EUR {record.value_eur:,}\n"
            f"Clauses: {', '.join(record.clauses)}\n{record.summary}"
        )
    if command == "counts":
        by = _COUNT_BY.get(rest.lower() or "status")
        if by is None:
            return "counts by status, kind, jurisdiction or clause"
        counts = records.counts(by)
        shown = ", ".join(f"{value} {n}" for value, n in counts.counts.items())
        return f"{counts.total} contracts by {by}: {shown}"
    return HELP
