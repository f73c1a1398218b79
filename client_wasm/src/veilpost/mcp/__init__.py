"""MCP over Veilpost: the Model Context Protocol through end-to-end-encrypted DMs.

An agent serves any ``mcp`` server — its tools, resources and prompts — to the inboxes on an
allow-list (:class:`McpHost`); an MCP client reaches it with :func:`connect`, a transport for
the official SDK's ``ClientSession`` or ``mcp.Client``. Every request, result, error and
notification is one MLS-encrypted message of the content type ``veilpost.org/mcp:1.0``
(:class:`~veilpost.client.content.McpMessage`), so the relay sees neither the question nor
the answer. ``veilpost mcp`` (:mod:`veilpost.mcp.messaging`) is the other direction: an MCP
server over stdio that gives an MCP host this profile's messaging as tools.

::

    # the agent with the private data
    agent = Agent.from_env()
    McpHost(agent, records_server, allow=["0x5aA3…"])
    agent.run_forever()

    # an MCP client, on another agent that is running
    async with mcp.Client(connect(client_agent, "<the agent's inbox or 0x address>")) as c:
        found = await c.call_tool("search_records", {"query": "indemnity"})

Modules: :mod:`~veilpost.mcp.transport` (the client transport, the routing of an agent's MCP
messages), :mod:`~veilpost.mcp.serving` (the host), :mod:`~veilpost.mcp.access` (the
allow-list), :mod:`~veilpost.mcp.sessions` (the bookkeeping, without I/O),
:mod:`~veilpost.mcp.content` (SDK messages and error codes), :mod:`~veilpost.mcp.messaging`
(``veilpost mcp``). The whole package needs the ``mcp`` SDK (``pip install veilpost[mcp]``,
CPython only); nothing outside it imports the SDK. ``docs/mcp.md`` has the details.
"""

from .access import AllowList, AllowListError
from .content import (
    NOT_ALLOWED,
    NOT_SERVED_HERE,
    SEND_FAILED,
    TOO_LARGE,
    TOO_MANY,
    UNKNOWN_SESSION,
    McpPayloadError,
)
from .serving import McpCaller, McpHost, current_caller
from .sessions import SessionKey
from .transport import DEFAULT_TIMEOUT, McpClientTransport, McpRouter, McpTransportError, connect

__all__ = [
    "DEFAULT_TIMEOUT",
    "NOT_ALLOWED",
    "NOT_SERVED_HERE",
    "SEND_FAILED",
    "TOO_LARGE",
    "TOO_MANY",
    "UNKNOWN_SESSION",
    "AllowList",
    "AllowListError",
    "McpCaller",
    "McpClientTransport",
    "McpHost",
    "McpPayloadError",
    "McpRouter",
    "McpTransportError",
    "SessionKey",
    "connect",
    "current_caller",
]
