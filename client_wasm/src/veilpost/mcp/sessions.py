"""The bookkeeping of MCP over Veilpost, without I/O: the requests a client waits on, with
their deadlines (:class:`PendingRequests`), and a server's sessions, one per (DM, calling
inbox, session id), with their limits (:class:`SessionTable`). Times are passed in (a
monotonic clock in seconds), so the rules are tested without waiting.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

__all__ = ["PendingRequest", "PendingRequests", "SessionKey", "SessionTable"]

_S = TypeVar("_S")


@dataclass(frozen=True)
class PendingRequest:
    """A request sent and not answered yet: its JSON-RPC id, its method, when it was sent
    and when the wait for its answer ends."""

    request_id: str | int
    method: str
    sent_at: float
    deadline: float


class PendingRequests:
    """The requests of one client session waiting for their answer, each for at most
    ``timeout`` seconds.

    Ids are kept as JSON gives them (``1`` and ``"1"`` are different requests). An id seen
    again while its request is pending is refused (:class:`ValueError`): the answer could
    not tell them apart.
    """

    def __init__(self, timeout: float) -> None:
        if not timeout > 0:
            raise ValueError(f"the timeout must be positive, got {timeout!r}")
        self.timeout = timeout
        self._pending: dict[tuple[type, str | int], PendingRequest] = {}

    @staticmethod
    def _key(request_id: str | int) -> tuple[type, str | int]:
        return (type(request_id), request_id)

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, request_id: object) -> bool:
        return isinstance(request_id, str | int) and self._key(request_id) in self._pending

    def add(self, request_id: str | int, method: str, now: float) -> PendingRequest:
        """Start waiting for the answer to ``request_id``, sent at ``now``."""
        key = self._key(request_id)
        if key in self._pending:
            raise ValueError(f"request id {request_id!r} is already waiting for its answer")
        pending = PendingRequest(request_id, method, now, now + self.timeout)
        self._pending[key] = pending
        return pending

    def answer(self, request_id: str | int) -> PendingRequest | None:
        """The request ``request_id`` answers, no longer pending; ``None`` if it is not
        pending (never sent, answered already, or given up on)."""
        return self._pending.pop(self._key(request_id), None)

    def expire(self, now: float) -> list[PendingRequest]:
        """The requests whose deadline has passed at ``now``, oldest first, given up on."""
        expired = [p for p in self._pending.values() if p.deadline <= now]
        for pending in expired:
            del self._pending[self._key(pending.request_id)]
        return sorted(expired, key=lambda p: p.deadline)

    def next_deadline(self) -> float | None:
        """The earliest deadline, or ``None`` when nothing is pending."""
        return min((p.deadline for p in self._pending.values()), default=None)

    def drain(self) -> list[PendingRequest]:
        """Every pending request, oldest first, given up on (the connection ended)."""
        pending = sorted(self._pending.values(), key=lambda p: p.sent_at)
        self._pending.clear()
        return pending


class SessionKey(NamedTuple):
    """Which MCP session a message belongs to: its DM, the inbox that sent it (verified by
    MLS) and the session id it names. A peer can only ever reach its own sessions."""

    conversation_id: str
    inbox_id: str
    session: str


class SessionTable(Generic[_S]):
    """A server's live sessions, least recently used first.

    At most ``max_per_inbox`` sessions per calling inbox and ``max_sessions`` in all: adding
    one beyond a limit evicts the least recently used (of that inbox first). A session
    unused for ``idle_seconds`` is evicted by :meth:`idle`.
    """

    def __init__(self, *, max_per_inbox: int, max_sessions: int, idle_seconds: float) -> None:
        if max_per_inbox < 1 or max_sessions < max_per_inbox:
            raise ValueError("need 1 <= max_per_inbox <= max_sessions")
        if not idle_seconds > 0:
            raise ValueError(f"idle_seconds must be positive, got {idle_seconds!r}")
        self.max_per_inbox = max_per_inbox
        self.max_sessions = max_sessions
        self.idle_seconds = idle_seconds
        self._sessions: OrderedDict[SessionKey, tuple[_S, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, key: object) -> bool:
        return key in self._sessions

    def __iter__(self) -> Iterator[SessionKey]:
        return iter(list(self._sessions))

    def get(self, key: SessionKey, now: float) -> _S | None:
        """The session ``key`` (marked used at ``now``), or ``None``."""
        entry = self._sessions.get(key)
        if entry is None:
            return None
        self._sessions[key] = (entry[0], now)
        self._sessions.move_to_end(key)
        return entry[0]

    def add(self, key: SessionKey, session: _S, now: float) -> list[tuple[SessionKey, _S]]:
        """Add a new session; return the sessions evicted to make room for it."""
        if key in self._sessions:
            raise ValueError(f"session {key} exists already")
        evicted: list[tuple[SessionKey, _S]] = []
        same_inbox = [k for k in self._sessions if k.inbox_id == key.inbox_id]
        while len(same_inbox) >= self.max_per_inbox:
            oldest = same_inbox.pop(0)
            evicted.append((oldest, self._sessions.pop(oldest)[0]))
        while len(self._sessions) >= self.max_sessions:
            oldest, (value, _) = self._sessions.popitem(last=False)
            evicted.append((oldest, value))
        self._sessions[key] = (session, now)
        return evicted

    def remove(self, key: SessionKey) -> _S | None:
        """Forget the session ``key``; return it (``None`` if unknown)."""
        entry = self._sessions.pop(key, None)
        return None if entry is None else entry[0]

    def idle(self, now: float) -> list[tuple[SessionKey, _S]]:
        """Evict and return the sessions unused for ``idle_seconds`` at ``now``."""
        stale = [k for k, (_, used) in self._sessions.items() if now - used >= self.idle_seconds]
        return [(k, self._sessions.pop(k)[0]) for k in stale]

    def clear(self) -> list[tuple[SessionKey, _S]]:
        """Evict and return every session."""
        everything = [(k, v) for k, (v, _) in self._sessions.items()]
        self._sessions.clear()
        return everything
