// The sidebar's conversation list: newest activity first, a preview of the last message, the
// time and the unread count. Rebuilt whole on every change (it is short); the focused item is
// focused again afterwards so keyboard users keep their place.

import { avatar, h, relativeTime } from "./ui.js";

export function activity(conversation) {
  return Math.max(conversation.updatedAt ?? 0, conversation.lastMessage?.sentAt ?? 0);
}

export function sortConversations(conversations) {
  return [...conversations].sort((a, b) => activity(b) - activity(a));
}

/** One line of what the last message was, prefixed with who sent it. */
export function preview(conversation) {
  const message = conversation.lastMessage;
  if (!message) return conversation.active === false ? "You left this conversation" : "No messages yet";
  let body;
  if (message.kind === "notice") return oneLine(message.text);
  if (message.kind === "attachment" || message.attachment) body = `📎 ${message.attachment?.filename ?? "Attachment"}`;
  else body = oneLine(message.text);
  if (message.mine) return `You: ${body}`;
  if (conversation.kind === "group" && message.senderName) return `${message.senderName}: ${body}`;
  return body;
}

function oneLine(text) {
  return String(text ?? "").replace(/\s+/g, " ").trim();
}

export function matches(conversation, filter) {
  if (!filter) return true;
  const needle = filter.toLocaleLowerCase();
  const haystack = [conversation.title, conversation.name, conversation.peerInboxId,
    ...(conversation.members ?? []).map((member) => member.name)];
  return haystack.some((text) => String(text ?? "").toLocaleLowerCase().includes(needle));
}

export class ConversationList {
  constructor(list, empty, { onOpen }) {
    this.list = list;
    this.empty = empty;
    this.onOpen = onOpen;
    list.addEventListener("keydown", (event) => this._arrows(event));
  }

  render(conversations, { openId, filter }) {
    const focused = document.activeElement?.closest?.("[data-testid=conversation]");
    const focusedId = focused && this.list.contains(focused) ? focused.dataset.conversationId : null;
    const shown = sortConversations(conversations).filter((c) => matches(c, filter));
    this.list.replaceChildren(...shown.map((c) => this._item(c, c.id === openId)));
    this.empty.hidden = conversations.length > 0;
    if (focusedId) this._button(focusedId)?.focus({ preventScroll: true });
  }

  _item(conversation, open) {
    const unread = conversation.unread ?? 0;
    const time = activity(conversation);
    const button = h("button", {
      type: "button",
      class: ["conversation-item", open && "open", unread > 0 && "has-unread", conversation.active === false && "inactive"],
      dataset: { testid: "conversation", conversationId: conversation.id, unread, kind: conversation.kind },
      "aria-current": open ? "true" : null,
      onclick: () => this.onOpen(conversation.id),
    },
    avatar(conversation.title, conversation.peerInboxId || conversation.id, conversation.kind === "group" ? "group" : ""),
    h("span", { class: "conversation-main" },
      h("span", { class: "conversation-top" },
        h("span", { class: "conversation-name", dataset: { testid: "conversation-name" } }, conversation.title || "Untitled"),
        time ? h("time", { class: "conversation-time", datetime: new Date(time).toISOString() }, relativeTime(time)) : null),
      h("span", { class: "conversation-bottom" },
        h("span", { class: "conversation-preview", dataset: { testid: "conversation-preview" } }, preview(conversation)),
        unread > 0 ? h("span", { class: "badge", dataset: { testid: "unread-badge" } },
          h("span", { "aria-hidden": "true" }, unread > 99 ? "99+" : String(unread)),
          h("span", { class: "visually-hidden" }, `, ${unread} unread`)) : null)));
    return h("li", { class: "conversation-row" }, button);
  }

  _button(id) {
    return [...this.list.querySelectorAll("[data-testid=conversation]")].find((b) => b.dataset.conversationId === id);
  }

  // Up/Down move between conversations, Home/End jump to the ends.
  _arrows(event) {
    const buttons = [...this.list.querySelectorAll("[data-testid=conversation]")];
    const index = buttons.indexOf(document.activeElement);
    if (index < 0) return;
    const next = { ArrowDown: index + 1, ArrowUp: index - 1, Home: 0, End: buttons.length - 1 }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    buttons[Math.max(0, Math.min(buttons.length - 1, next))].focus();
  }
}
