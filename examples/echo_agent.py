"""An echo agent: answers every text message in its DMs and groups.

Run it against a local relay (`./dev serve` in another terminal):

    export VEILPOST_DB_KEY=$(.venv/bin/veilpost keygen)   # keep it: it opens the database
    export VEILPOST_DB_PATH=echo-agent.sqlite3
    .venv/bin/veilpost run examples/echo_agent.py

It prints its inbox id; message it with `veilpost send <inbox id> hello --wait 5`.
"""

from __future__ import annotations

from veilpost.agent import Agent, MessageContext

agent = Agent.from_env()


@agent.on_conversation
async def greet(agent: Agent, conversation) -> None:  # type: ignore[no-untyped-def]
    print(f"joined {conversation.id}", flush=True)


@agent.on_text
async def echo(ctx: MessageContext) -> None:
    await ctx.reply(f"echo: {ctx.text}")


@agent.on_ready
def announce(agent: Agent) -> None:
    print(f"echo agent ready: inbox {agent.inbox_id}", flush=True)


if __name__ == "__main__":
    agent.run_forever()
