"""Where the relay's database calls run.

Channels runs ``database_sync_to_async`` calls of a process on one thread, in order: that is
where publishing (``webapp.relay.sequencer``), subscribing and authenticating run. Calls that
only read what is committed — backlogs, a node's gap fills, its settle check — go to
:func:`reading` instead: a small pool of threads, each with a database connection of its own
(SQLite's WAL lets readers run beside the writer), so that a thousand connections reading
their backlogs at once never hold up a publish, nor a publish them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async


def reading(function: Callable[..., Any]) -> Any:
    """``function`` (which only reads) as a coroutine function run on the reader pool."""
    return database_sync_to_async(function, thread_sensitive=False)
