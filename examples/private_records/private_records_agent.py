"""The private-records agent: a small, fictional data set of contracts, reachable only
through Veilpost — as MCP tools for MCP clients, and as text commands in the web chat.

    export VEILPOST_DB_KEY=$(.venv/bin/veilpost keygen)      # keep it: it opens the database
    export VEILPOST_DB_PATH=records-agent.sqlite3
    export PRIVATE_RECORDS_ALLOW="<your inbox id> 0x<an address>"   # who may ask
    .venv/bin/veilpost run examples/private_records/private_records_agent.py

``PRIVATE_RECORDS_ALLOW`` lists the inbox ids and ``0x`` addresses that may ask (commas or
spaces; ``*`` is everyone; empty is nobody). ``PRIVATE_RECORDS_DATA`` names another data set
(default: ``records.json`` beside this file). See ``README.md`` here.
"""

from __future__ import annotations

import os

from records import DATA, RecordSet, answer_text, build_server

from veilpost.agent import Agent, MessageContext
from veilpost.mcp import AllowList, McpHost

agent = Agent.from_env()
records = RecordSet.load(os.environ.get("PRIVATE_RECORDS_DATA") or DATA)
allow = AllowList.parse(os.environ.get("PRIVATE_RECORDS_ALLOW", ""))
host = McpHost(agent, build_server(records), allow=allow)


@agent.on_text
async def chat(ctx: MessageContext) -> None:
    """The web chat's way in: the same data, the same allow-list, plain-text commands, in DMs
    only (in a group every member would read the answer, allowed or not)."""
    if not ctx.is_dm:
        return  # silent: a notice per message would be noise to the group
    if not await allow.allows(agent.client, ctx.sender_inbox_id):
        await ctx.reply(
            "You are not on this agent's allow-list, so it cannot answer you."
            f" Your inbox id is {ctx.sender_inbox_id}: ask its operator to add it."
        )
        return
    await ctx.reply(answer_text(records, ctx.text))


@agent.on_ready
def announce(agent: Agent) -> None:
    print(f"private records agent ready: inbox {agent.inbox_id}", flush=True)
    if not allow:
        print("nobody may ask yet: set PRIVATE_RECORDS_ALLOW", flush=True)


if __name__ == "__main__":
    agent.run_forever()
