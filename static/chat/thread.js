// One conversation's messages as far as they are loaded, plus my sends the worker has not
// confirmed yet: shared by the web chat (app.js) and the widget (static/widget/widget.js).

let localIds = 0;

export class Thread {
  messages = []; // oldest first
  byId = new Map();
  pending = []; // my sends not yet answered by the worker (local placeholders)
  buffer = []; // events that arrived while the first page was loading
  nextBefore = null; // the token of the next older page, null at the start
  loaded = false;
  loading = null; // the first page's promise while it loads

  /** What to show: the messages, then the pending sends. */
  get shown() {
    return { messages: [...this.messages, ...this.pending], nextBefore: this.nextBefore };
  }

  /** Add or replace a message (from the worker: an answer or an event); returns the stored one. */
  insert(message) {
    if (!this.loaded) {
      if (this.loading) this.buffer.push(message);
      return message;
    }
    const known = this.byId.get(message.id);
    if (known) {
      // A command's answer can arrive after the event that reported its delivery: a message
      // never goes back from "sent" to "sending" (a retry starts from "failed").
      if (known.status === "sent" && message.status === "sending") message = { ...message, status: "sent" };
      this.messages[this.messages.indexOf(known)] = message;
    } else {
      if (message.mine) {
        const index = this.pending.findIndex((p) => p.text === (message.text ?? "") && p.attachment?.filename === message.attachment?.filename);
        if (index >= 0) this.pending.splice(index, 1);
      }
      let at = this.messages.length;
      while (at > 0 && this.messages[at - 1].sentAt > message.sentAt) at -= 1;
      this.messages.splice(at, 0, message);
    }
    this.byId.set(message.id, message);
    return message;
  }

  /** Load the newest page once (concurrent calls share it); `call` is the worker's. */
  load(call, conversationId, limit) {
    if (this.loaded) return Promise.resolve();
    this.loading ??= (async () => {
      try {
        const { messages, nextBefore } = await call("messages", { conversationId, limit });
        this.messages = [...messages];
        this.byId = new Map(messages.map((m) => [m.id, m]));
        this.nextBefore = nextBefore ?? null;
        this.loaded = true;
        for (const message of this.buffer.splice(0)) this.insert(message);
      } finally {
        this.loading = null;
      }
    })();
    return this.loading;
  }

  /** Load the page before the oldest loaded message. */
  async loadOlder(call, conversationId, limit) {
    if (!this.nextBefore) return;
    const { messages, nextBefore } = await call("messages", { conversationId, limit, before: this.nextBefore });
    const older = messages.filter((m) => !this.byId.has(m.id));
    this.messages = [...older, ...this.messages];
    for (const message of older) this.byId.set(message.id, message);
    this.nextBefore = nextBefore ?? null;
  }

  /** Retry a failed send: shown as "sending" at once (`changed()` re-renders), "failed" again
   * if the worker refuses (then the error is thrown); resolves with the sent message. */
  async retry(call, conversationId, message, changed) {
    const before = this.byId.get(message.id) ?? message;
    this._replace({ ...before, status: "sending" }, changed);
    try {
      const { message: sent } = await call("retry", { conversationId, messageId: message.id });
      return sent;
    } catch (error) {
      this._replace({ ...(this.byId.get(message.id) ?? before), status: "failed" }, changed);
      throw error;
    }
  }

  /** My reaction, shown at once and sent; undone if the worker refuses (then it throws). */
  async react(call, conversationId, message, emoji, remove, changed) {
    const before = this.byId.get(message.id) ?? message;
    this._replace({ ...before, reactions: toggled(before.reactions, emoji, remove) }, changed);
    try {
      await call("react", { conversationId, messageId: message.id, emoji, remove: Boolean(remove) });
    } catch (error) {
      this._replace({ ...(this.byId.get(message.id) ?? before), reactions: before.reactions }, changed);
      throw error;
    }
  }

  _replace(message, changed) {
    if (!this.byId.has(message.id)) return;
    this.insert(message);
    changed();
  }

  /** A placeholder for a send of mine, shown as "sending" until the worker answers. */
  addPending(me, conversationId, fields) {
    const message = {
      id: `local-${++localIds}`, local: true, conversationId, senderInboxId: me.inboxId,
      senderName: me.name, mine: true, kind: "text", text: "", status: "sending", sentAt: Date.now(),
      replyTo: null, reactions: [], attachment: null, readBy: [], ...fields,
    };
    this.pending.push(message);
    return message;
  }

  /** Remove a placeholder; false if it was gone already. */
  dropPending(message) {
    const index = this.pending.indexOf(message);
    if (index < 0) return false;
    this.pending.splice(index, 1);
    return true;
  }
}

/** My reaction `emoji` added to (or removed from) `reactions`, as the worker will report it. */
function toggled(reactions, emoji, remove) {
  const next = (reactions ?? []).map((r) => ({ ...r }));
  const found = next.find((r) => r.emoji === emoji);
  if (remove) {
    if (found?.mine) {
      found.count -= 1;
      found.mine = false;
    }
    return next.filter((r) => r.count > 0);
  }
  if (!found) next.push({ emoji, count: 1, mine: true });
  else if (!found.mine) {
    found.count += 1;
    found.mine = true;
  }
  return next;
}
