"""A group-aware agent: in DMs it answers everything; in groups only messages that mention it
(``@<name>`` or the start of its inbox id), so it does not talk over people.

    export VEILPOST_DB_KEY=$(.venv/bin/veilpost keygen)
    export VEILPOST_DB_PATH=mention-agent.sqlite3
    VEILPOST_AGENT_NAME=helper .venv/bin/veilpost run examples/mention_agent.py
"""

from __future__ import annotations

import os

from veilpost.agent import Agent, MessageContext

NAME = os.environ.get("VEILPOST_AGENT_NAME", "helper")
agent = Agent.from_env()


def mentioned(ctx: MessageContext) -> bool:
    text = ctx.text.lower()
    return f"@{NAME.lower()}" in text or f"@{ctx.agent.inbox_id[:8]}" in text


@agent.on_text
async def answer(ctx: MessageContext) -> None:
    if not ctx.is_dm and not mentioned(ctx):
        return
    question = ctx.text.replace(f"@{NAME}", "").strip()
    who = ctx.sender_inbox_id[:8]
    await ctx.reply(f"{who}, you asked: {question!r}. (I am {NAME}, a demo agent.)", quote=True)


if __name__ == "__main__":
    agent.run_forever()
