// The open conversation's message list.
//
// Rendering is keyed: every message (and day separator) has a node and a signature of what it
// shows; a render builds new nodes only for what changed and moves nothing that is already in
// place, so a status tick or a reaction does not reset the scroll position, restart image
// decoding or steal the keyboard focus. A node that is rebuilt while it holds the focus hands
// it to its counterpart (`data-focus`) in the new node.
//
// Remote strings only ever become text nodes or attribute values (see ui.js `h()`).

import {
  clockTime, dayKey, dayLabel, formatSize, fullTime, h, hueClass, icon, imageBlob, isPreviewable,
  saveFile, shortId,
} from "./ui.js";

export const REACTIONS = ["👍", "❤️", "😂", "😮", "😢", "🙏"];

const RUN_GAP = 5 * 60_000; // messages closer than this from one sender share a header
const BOTTOM_SLACK = 48; // px from the bottom that still counts as "at the bottom"

const STATUS = {
  sending: ["clock", "Sending"],
  sent: ["check", "Sent"],
  failed: ["alert", "Not sent"],
};

export class MessageView {
  _nodes = new Map(); // key -> {node, signature}
  _images = new Map(); // message id -> {url, length}
  _picker = null; // id of the message whose reaction picker is open
  _atBottom = true;
  _ownScrollTop = null;

  /** `actions`: reply(m), react(m, emoji, remove), retry(m), download(m, button), missing(). */
  constructor({ scroller, list, loadOlder, jumpLatest, actions }) {
    Object.assign(this, { scroller, list, loadOlder, jumpLatest, actions });
    this.conversation = null;
    this.thread = null;
    // "At the bottom" follows the reader's scrolling, not ours: a scroll event at the position
    // this view scrolled to is its own (it may arrive after an image grew the list).
    scroller.addEventListener("scroll", () => {
      if (scroller.scrollTop === this._ownScrollTop) return;
      this._atBottom = this._distanceFromBottom() < BOTTOM_SLACK;
      if (this._atBottom) jumpLatest.hidden = true;
    }, { passive: true });
    // Images decoding, the composer growing, a reply preview: stay pinned to the bottom.
    const pin = new ResizeObserver(() => {
      if (this._atBottom) this.scrollToBottom();
    });
    pin.observe(list);
    pin.observe(scroller);
    jumpLatest.addEventListener("click", () => {
      this.scrollToBottom(true);
      jumpLatest.hidden = true;
    });
    document.addEventListener("click", (event) => {
      if (this._picker && !event.target.closest?.(".picker, [data-testid=react-button]")) this.closePicker();
    });
  }

  get atBottom() {
    return this._atBottom;
  }

  /** Start showing `conversation` (empties the list, frees the previous image previews). */
  reset(conversation) {
    for (const { url } of this._images.values()) URL.revokeObjectURL(url);
    this._images.clear();
    this._nodes.clear();
    this.list.replaceChildren();
    this._picker = null;
    this._atBottom = true;
    this.jumpLatest.hidden = true;
    this.loadOlder.hidden = true;
    this.conversation = conversation;
    this.thread = null;
  }

  /** Show `thread` ({messages, nextBefore}). `scroll`: "auto" (follow the bottom if the reader
   * is there), "bottom" or "older" (messages were prepended: keep the reader's place).
   * `incoming`: a new message from someone else arrived (offer a jump if scrolled up). */
  render(thread, { scroll = "auto", incoming = false } = {}) {
    this.thread = thread;
    const wasAtBottom = this._atBottom;
    const fromBottom = this.scroller.scrollHeight - this.scroller.scrollTop;
    this._reconcile(this._items(thread));
    this.loadOlder.hidden = !thread.nextBefore;
    if (scroll === "bottom" || (scroll === "auto" && wasAtBottom)) this.scrollToBottom();
    else if (scroll === "older") this.scroller.scrollTop = this.scroller.scrollHeight - fromBottom;
    if (incoming && !wasAtBottom && scroll !== "bottom") this.jumpLatest.hidden = false;
  }

  refresh() {
    if (this.thread) this.render(this.thread, { scroll: "auto" });
  }

  scrollToBottom(smooth = false) {
    this.scroller.scrollTo({ top: this.scroller.scrollHeight, behavior: smooth ? "smooth" : "instant" });
    this._ownScrollTop = this.scroller.scrollTop;
    this._atBottom = true;
  }

  /** Bring a message into view and flash it (a click on a reply's quote). */
  scrollToMessage(id) {
    const node = this._node(id);
    if (!node) {
      this.actions.missing?.();
      return;
    }
    node.scrollIntoView({ block: "center", behavior: "smooth" });
    node.classList.remove("flash");
    void node.offsetWidth; // restart the animation
    node.classList.add("flash");
    node.querySelector("button")?.focus({ preventScroll: true });
  }

  togglePicker(id) {
    this._picker = this._picker === id ? null : id;
    this.refresh();
    if (this._picker) this._node(id)?.querySelector(".picker-option")?.focus({ preventScroll: true });
  }

  closePicker({ focus = false } = {}) {
    const id = this._picker;
    if (!id) return;
    this._picker = null;
    this.refresh();
    if (focus) this._node(id)?.querySelector("[data-testid=react-button]")?.focus({ preventScroll: true });
  }

  get pickerOpen() {
    return this._picker !== null;
  }

  _node(id) {
    return this._nodes.get(`m-${id}`)?.node ?? null;
  }

  _distanceFromBottom() {
    return this.scroller.scrollHeight - this.scroller.scrollTop - this.scroller.clientHeight;
  }

  // -- what to show ------------------------------------------------------------------------

  _items(thread) {
    const group = this.conversation?.kind === "group";
    const messages = thread.messages;
    const lastMine = messages.findLast((m) => m.mine && m.kind !== "notice" && !m.local);
    const items = [];
    if (!thread.nextBefore && messages.length) {
      items.push({ key: "start", signature: "start", build: () => startOfHistory() });
    }
    if (!messages.length) items.push({ key: "empty", signature: "empty", build: () => emptyThread() });
    let previous = null;
    let previousDay = null;
    for (const message of messages) {
      const day = dayKey(message.sentAt);
      if (day !== previousDay) {
        const label = dayLabel(message.sentAt);
        items.push({ key: `day-${day}`, signature: label, build: () => daySeparator(label) });
        previousDay = day;
        previous = null;
      }
      const continued = Boolean(previous) && previous.kind !== "notice" && message.kind !== "notice"
        && previous.senderInboxId === message.senderInboxId && previous.mine === message.mine
        && message.sentAt - previous.sentAt < RUN_GAP;
      const context = {
        group,
        continued,
        showSender: group && !message.mine && !continued && message.kind !== "notice",
        last: message === lastMine,
        picker: this._picker === message.id,
      };
      items.push({ key: `m-${message.id}`, signature: signature(message, context), build: () => this._message(message, context) });
      previous = message;
    }
    return items;
  }

  _reconcile(items) {
    const wanted = new Set(items.map((item) => item.key));
    for (const [key, entry] of this._nodes) {
      if (!wanted.has(key)) {
        entry.node.remove();
        this._nodes.delete(key);
        const id = key.slice(2);
        if (key.startsWith("m-") && this._images.has(id)) {
          URL.revokeObjectURL(this._images.get(id).url);
          this._images.delete(id);
        }
      }
    }
    let cursor = this.list.firstChild;
    for (const item of items) {
      let entry = this._nodes.get(item.key);
      if (!entry || entry.signature !== item.signature) {
        const node = item.build();
        if (entry) {
          const focusKey = entry.node.contains(document.activeElement) ? document.activeElement.dataset?.focus : null;
          if (cursor === entry.node) cursor = node;
          entry.node.replaceWith(node);
          if (focusKey) node.querySelector(`[data-focus="${CSS.escape(focusKey)}"]`)?.focus({ preventScroll: true });
        }
        entry = { node, signature: item.signature };
        this._nodes.set(item.key, entry);
      }
      if (entry.node === cursor) cursor = cursor.nextSibling;
      else this.list.insertBefore(entry.node, cursor);
    }
  }

  // -- one message -----------------------------------------------------------------------

  _message(m, context) {
    const data = { testid: "message", messageId: m.id, status: m.status, kind: m.kind, mine: String(Boolean(m.mine)) };
    if (m.kind === "notice") {
      return h("li", { class: "notice", dataset: data },
        h("span", { class: "notice-text", dataset: { testid: "message-text" } }, m.text ?? ""));
    }
    const who = m.mine ? "You" : (m.senderName || shortId(m.senderInboxId));
    const item = h("li", {
      class: ["message", m.mine ? "mine" : "theirs", context.continued && "continued", m.local && "local"],
      dataset: { ...data, sender: m.senderInboxId },
    });
    if (context.showSender) {
      item.append(h("span", { class: ["sender", hueClass(m.senderInboxId)], dataset: { testid: "message-sender" }, "aria-hidden": "true" }, who));
    }
    const bubble = h("div", { class: ["bubble", m.attachment && isImage(m.attachment) && "has-image"] },
      h("span", { class: "visually-hidden" }, `${who}: `));
    if (m.replyTo) bubble.append(this._quote(m.replyTo));
    if (m.attachment) bubble.append(this._attachment(m));
    const text = m.text ?? "";
    // An attachment's text is only its description ("Sent an attachment: name"): the file
    // itself is shown, with its name.
    if (text && !(m.attachment && m.kind === "attachment")) {
      bubble.append(h("p", { class: ["text", m.kind === "unknown" && "fallback"], dataset: { testid: "message-text" } }, text));
    }
    if (m.kind === "unknown") bubble.append(h("p", { class: "fallback-note" }, "Sent from a newer app: this is its plain-text version."));
    const caption = bubble.lastElementChild?.classList.contains("image") ? bubble.querySelector(".image-caption") : null;
    (caption ?? bubble).append(meta(m));
    const row = h("div", { class: "bubble-row" }, bubble, this._actions(m, context));
    if (context.picker && !m.local) row.append(this._reactionPicker(m));
    item.append(row);
    // Touch screens have no hover: a tap on the bubble shows its actions.
    bubble.addEventListener("click", (event) => {
      if (!event.target.closest("button")) item.classList.toggle("show-actions");
    });
    if (m.reactions?.length) item.append(this._reactions(m));
    if (m.status === "failed" && m.mine) {
      item.append(h("div", { class: "failed-row", role: "alert" },
        icon("alert"), h("span", {}, "Not sent."),
        m.local ? null : h("button", {
          type: "button", class: "button small", dataset: { testid: "retry-button", focus: "retry" },
          onclick: () => this.actions.retry(m),
        }, "Retry")));
    }
    if (context.last && m.readBy?.length) {
      item.append(h("div", { class: "read-receipt", dataset: { testid: "read-receipt" } },
        icon("checks"), context.group ? `Read by ${m.readBy.length}` : "Read"));
    }
    return item;
  }

  _quote(replyTo) {
    return h("button", {
      type: "button", class: "quote", dataset: { testid: "reply-quote", focus: "quote" },
      "aria-label": `In reply to ${replyTo.senderName || "a message"}: ${replyTo.text ?? "not available"}`,
      onclick: () => this.scrollToMessage(replyTo.id),
    },
    h("span", { class: "quote-sender" }, replyTo.senderName || "Message"),
    h("span", { class: "quote-text" }, replyTo.text == null ? "The original message is not available" : replyTo.text || "Attachment"));
  }

  _attachment(m) {
    const attachment = m.attachment;
    const name = attachment.filename || "attachment";
    if (isImage(attachment)) {
      const image = h("img", {
        class: "attachment-image", src: this._imageUrl(m.id, attachment), alt: name,
        decoding: "async", dataset: { testid: "attachment-image" },
      });
      return h("figure", { class: "image" }, image,
        h("figcaption", { class: "image-caption" },
          h("span", { class: "file-name" }, name),
          h("button", {
            type: "button", class: "icon-button small", "aria-label": `Save ${name}`, title: "Save",
            dataset: { testid: "download-button", focus: "download" },
            onclick: () => saveFile(attachment.data, name),
          }, icon("download"))));
    }
    return h("div", { class: "file", dataset: { testid: "attachment-file" } },
      h("span", { class: "file-icon" }, icon("file")),
      h("span", { class: "file-text" },
        h("span", { class: "file-name", dataset: { testid: "attachment-name" } }, name),
        h("span", { class: "file-size" }, [formatSize(attachment.size), attachment.mimeType].filter(Boolean).join(" · "))),
      m.local ? null : h("button", {
        type: "button", class: "icon-button small", "aria-label": `Download ${name}`, title: "Download",
        dataset: { testid: "download-button", focus: "download" },
        onclick: (event) => this.actions.download(m, event.currentTarget),
      }, icon("download")));
  }

  _imageUrl(id, attachment) {
    const cached = this._images.get(id);
    if (cached && cached.length === attachment.data.length) return cached.url;
    if (cached) URL.revokeObjectURL(cached.url);
    const url = URL.createObjectURL(imageBlob(attachment.data, attachment.mimeType));
    this._images.set(id, { url, length: attachment.data.length });
    return url;
  }

  _actions(m, context) {
    const box = h("div", { class: "actions" });
    if (m.local) return box;
    box.append(
      h("button", {
        type: "button", class: "icon-button small", "aria-label": "Reply", title: "Reply",
        dataset: { testid: "reply-button", focus: "reply" }, onclick: () => this.actions.reply(m),
      }, icon("reply")),
      h("button", {
        type: "button", class: "icon-button small", "aria-label": "React", title: "React",
        "aria-expanded": String(context.picker), dataset: { testid: "react-button", focus: "react" },
        onclick: () => this.togglePicker(m.id),
      }, icon("smile")));
    return box;
  }

  _reactionPicker(m) {
    const mine = new Set((m.reactions ?? []).filter((r) => r.mine).map((r) => r.emoji));
    const picker = h("div", { class: "picker", role: "group", "aria-label": "Pick a reaction", dataset: { testid: "reaction-picker" } },
      REACTIONS.map((emoji) => h("button", {
        type: "button", class: ["picker-option", mine.has(emoji) && "mine"],
        "aria-label": mine.has(emoji) ? `Remove ${emoji}` : `React with ${emoji}`,
        "aria-pressed": String(mine.has(emoji)),
        dataset: { testid: "reaction-option", emoji, focus: `option-${emoji}` },
        onclick: () => {
          this.closePicker();
          this.actions.react(m, emoji, mine.has(emoji));
        },
      }, emoji)));
    picker.addEventListener("keydown", (event) => {
      const options = [...picker.querySelectorAll(".picker-option")];
      const index = options.indexOf(document.activeElement);
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        this.closePicker({ focus: true });
      } else if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
        event.preventDefault();
        const step = event.key === "ArrowRight" ? 1 : -1;
        options[(index + step + options.length) % options.length].focus();
      }
    });
    return picker;
  }

  _reactions(m) {
    return h("div", { class: "reactions", role: "group", "aria-label": "Reactions" },
      m.reactions.map((reaction) => h("button", {
        type: "button", class: ["reaction", reaction.mine && "mine"],
        "aria-pressed": String(Boolean(reaction.mine)),
        "aria-label": `${reaction.emoji} ${reaction.count}${reaction.mine ? ", including you: remove" : ""}`,
        title: reaction.mine ? "Remove your reaction" : `React with ${reaction.emoji}`,
        dataset: { testid: "reaction", emoji: reaction.emoji, count: reaction.count, mine: String(Boolean(reaction.mine)), focus: `reaction-${reaction.emoji}` },
        onclick: () => this.actions.react(m, reaction.emoji, Boolean(reaction.mine)),
      },
      h("span", { class: "reaction-emoji" }, reaction.emoji),
      h("span", { class: "reaction-count" }, String(reaction.count)))));
  }
}

function isImage(attachment) {
  return Boolean(attachment.inline && attachment.data && isPreviewable(attachment.mimeType));
}

function signature(message, context) {
  const attachment = message.attachment && { ...message.attachment, data: message.attachment.data?.length ?? 0 };
  return JSON.stringify([{ ...message, attachment }, context]);
}

function meta(m) {
  const parts = [h("time", { datetime: new Date(m.sentAt).toISOString(), title: fullTime(m.sentAt) }, clockTime(m.sentAt))];
  const status = m.mine ? STATUS[m.status] : null;
  if (status) {
    parts.push(h("span", { class: ["tick", `tick-${m.status}`], dataset: { testid: "message-status", status: m.status }, title: status[1] },
      icon(status[0]), h("span", { class: "visually-hidden" }, status[1])));
  }
  return h("span", { class: "meta" }, parts);
}

function daySeparator(label) {
  return h("li", { class: "day-separator" }, h("span", {}, label));
}

function startOfHistory() {
  return h("li", { class: "history-start" }, icon("lock"),
    h("span", {}, "Messages in this conversation are end-to-end encrypted: only its members can read them."));
}

function emptyThread() {
  return h("li", { class: "history-start empty" }, icon("lock"),
    h("span", {}, "No messages yet. Messages are end-to-end encrypted: only the members of this conversation can read them."));
}
