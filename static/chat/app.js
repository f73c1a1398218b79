// The Veilpost web chat: the page's entry module.
//
// The page renders; the crypto worker (static/chat/worker.js, docs/browser.md) owns the keys,
// the state and the WebSocket and hands the page plaintext to display. The worker's URL comes
// from the `data-worker` attribute of this module's <script> tag.
//
// Remote content (message text, names, file names, group names) is only ever inserted as text
// (`textContent`, text nodes, attribute setters: see ui.js `h()`), never parsed as HTML.
//
// Stable data-testid attributes, for end-to-end tests:
//   loading               the loading screen (hidden once ready)
//   loading-stage         each stage of it (data-stage = runtime | packages | state |
//                         connecting; data-state = pending | active | done)
//   loading-error         the error state, with loading-error-message and reload-button
//   ready                 the chat shell; the attribute appears when the chat is loaded
//   my-name               my name (an input: Enter or blur saves, Esc reverts)
//   my-inbox-id           my full inbox id (text)
//   copy-inbox, copy-link copy my inbox id / my invite link
//   connection-status     data-state = connecting | connected | disconnected
//   offline-banner        in the conversation pane while a lost connection is being restored
//   new-chat              opens new-chat-dialog (tab-dm, tab-group, dialog-close)
//   dm-recipient, dm-start, dm-offer (shown for #dm/<inboxId>)
//   group-name, group-members, group-create
//   conversation-filter   the search box over the list
//   conversation-list     the list; each item is conversation (data-conversation-id,
//                         data-unread, data-kind, aria-current when open) with
//                         conversation-name, conversation-preview and unread-badge
//   empty-state           the pane shown while no conversation is open
//   conversation-title, conversation-subtitle, back-button (narrow screens), members-button
//   message-list, load-older, jump-latest
//   message               data-message-id, data-status (sending | sent | failed | received),
//                         data-kind, data-mine; inside: message-text, message-sender (groups),
//                         message-status, reply-quote, reply-button, react-button,
//                         reaction-picker > reaction-option (data-emoji), reaction (data-emoji,
//                         data-count, data-mine, aria-pressed), retry-button, read-receipt,
//                         attachment-image, attachment-file, attachment-name, download-button
//   composer, send-button, attach-button, attach-input (the file input, hidden), reply-preview,
//   reply-cancel, inactive-banner
//   member-panel, member-panel-close, member-list, member (data-inbox-id, data-role) with
//   member-name, member-role, fingerprint and remove-member; add-members-input,
//   add-members-button, rename-input, rename-save, leave-button, leave-confirm
//   toast (data-kind = error | info) with toast-text and toast-dismiss
//   announcer             the polite live region announcing new messages

import { ConversationList, preview } from "./conversation-list.js";
import { MemberPanel, NewChatDialog, withBusy } from "./dialogs.js";
import { MessageView } from "./messages.js";
import {
  $, bindComposer, bytesToBase64, copyText, errorText, fillIcons, hueClass, initials, saveFile, shortId, Toasts,
} from "./ui.js";
import { Thread } from "./thread.js";
import { WorkerClient } from "./worker-client.js";

const PAGE_SIZE = 50;
const MAX_ATTACHMENT = 64 * 1024 * 1024; // the client's limit (content.MAX_REMOTE_ATTACHMENT_BYTES)
const STAGES = ["runtime", "packages", "state", "connecting"];
const NARROW = matchMedia("(max-width: 760px)");

const state = {
  me: null, // {inboxId, installationId, name, link}
  conversations: new Map(),
  threads: new Map(), // conversation id -> Thread
  drafts: new Map(), // conversation id -> unsent text
  openId: null,
  replyTo: null, // {id, text, senderName}
  filter: "",
  status: "connecting",
  statusError: null,
  lostConnection: false,
  navigated: false, // this page pushed a #c/ history entry (the back button pops it)
};

let client;
let toasts;
let list;
let view;
let newChat;
let memberPanel;

// -- loading ----------------------------------------------------------------------------------

const loading = {
  reached: -1,
  stage(stage, detail) {
    if (stage === "error") {
      this.fail(detail || "The encryption worker failed to start.");
      return;
    }
    const index = stage === "ready" ? STAGES.length : STAGES.indexOf(stage);
    if (index > this.reached) this.reached = index;
    for (const item of $("loading-stages").children) {
      const at = STAGES.indexOf(item.dataset.stage);
      item.dataset.state = at < this.reached ? "done" : at === this.reached ? "active" : "pending";
    }
    $("loading-progress").value = Math.max(0, this.reached);
    const text = stage === "shared" ? "This profile is open in another tab: sharing it." : detail;
    $("loading-detail").textContent = text ? String(text) : "";
  },
  fail(message) {
    if (!$("app").hidden) {
      toasts.show(message);
      return;
    }
    if ($("loading").dataset.state === "error") return; // keep the first, most specific cause
    $("loading").dataset.state = "error";
    $("loading-body").hidden = true;
    $("loading-error").hidden = false;
    $("loading-error-message").textContent = message;
    $("reload").focus();
  },
};

function start() {
  fillIcons();
  toasts = new Toasts($("toasts"));
  $("reload").addEventListener("click", () => location.reload());
  const script = document.querySelector("script[data-worker]");
  const workerUrl = script?.dataset.worker || "/static/chat/worker.js";
  loading.stage("runtime", null);
  try {
    client = new WorkerClient(workerUrl);
  } catch (error) {
    loading.fail(`This browser cannot run the encryption worker: ${error.message}`);
    return;
  }
  client.on("progress", ({ stage, detail }) => {
    if (!state.me) loading.stage(stage, detail);
    else if (stage === "error") toasts.show(String(detail ?? "The encryption worker failed."));
  });
  client.on("status", onStatus);
  client.on("message", onMessage);
  client.on("conversation", onConversation);
  client.on("crash", ({ message }) => loading.fail(state.me ? "The encryption worker stopped. Reload the page." : message));
  boot();
}

async function boot() {
  let conversations;
  try {
    [state.me, { conversations }] = await Promise.all([client.call("hello"), client.call("listConversations")]);
  } catch (error) {
    state.me = null;
    loading.fail(errorText(error));
    return;
  }
  for (const conversation of conversations) state.conversations.set(conversation.id, conversation);
  setUp();
  $("loading").hidden = true;
  const app = $("app");
  app.hidden = false;
  app.dataset.testid = "ready";
  renderMe();
  renderStatus();
  renderList();
  route();
}

// -- wiring -----------------------------------------------------------------------------------

function call(cmd, args) {
  return client.call(cmd, args);
}

function setUp() {
  list = new ConversationList($("conversation-list"), $("list-empty"), { onOpen: goTo });
  view = new MessageView({
    scroller: $("message-scroller"),
    list: $("message-list"),
    loadOlder: $("load-older"),
    jumpLatest: $("jump-latest"),
    actions: {
      reply: (message) => setReply(message),
      react,
      retry,
      download,
      missing: () => toasts.show("That message is older than what is loaded: load older messages first.", { kind: "info" }),
    },
  });
  newChat = new NewChatDialog({ call, toasts, onCreated: created });
  memberPanel = new MemberPanel({ call, toasts, getConversation: (id) => state.conversations.get(id) });

  const name = $("my-name");
  name.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      name.blur();
    } else if (event.key === "Escape") {
      name.value = state.me.name ?? "";
      name.blur();
    }
  });
  name.addEventListener("change", saveName);
  $("copy-inbox").addEventListener("click", () => copy(state.me.inboxId, "Inbox id copied"));
  $("copy-link").addEventListener("click", () => copy(state.me.link, "Invite link copied"));
  $("new-chat").addEventListener("click", () => newChat.open());
  $("filter").addEventListener("input", (event) => {
    state.filter = event.target.value.trim();
    renderList();
  });
  $("back").addEventListener("click", back);
  $("open-members").addEventListener("click", () => memberPanel.open(state.openId));
  $("load-older").addEventListener("click", loadOlder);
  $("reply-cancel").addEventListener("click", () => {
    setReply(null);
    $("composer-input").focus();
  });

  const input = $("composer-input");
  bindComposer($("composer"), input, { send: sendText, replying: () => state.replyTo, cancelReply: () => setReply(null) });
  input.addEventListener("paste", (event) => {
    const files = [...(event.clipboardData?.files ?? [])];
    if (!files.length) return;
    event.preventDefault();
    for (const file of files) sendFile(file);
  });
  const attach = $("attach-input");
  $("attach-button").addEventListener("click", () => attach.click());
  attach.addEventListener("change", () => {
    for (const file of attach.files) sendFile(file);
    attach.value = "";
  });
  const pane = $("conversation");
  pane.addEventListener("dragover", (event) => {
    if (![...event.dataTransfer.types].includes("Files")) return;
    event.preventDefault();
    pane.classList.add("dragging");
  });
  pane.addEventListener("dragleave", (event) => {
    if (!pane.contains(event.relatedTarget)) pane.classList.remove("dragging");
  });
  pane.addEventListener("drop", (event) => {
    event.preventDefault();
    pane.classList.remove("dragging");
    for (const file of event.dataTransfer.files) sendFile(file);
  });

  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && view.pickerOpen) view.closePicker({ focus: true });
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "k") {
      event.preventDefault();
      if (NARROW.matches && state.openId) back();
      $("filter").focus();
    }
  });
  window.addEventListener("hashchange", route);
  document.addEventListener("visibilitychange", maybeMarkRead);
  window.addEventListener("focus", maybeMarkRead);
  NARROW.addEventListener("change", maybeMarkRead);
  setInterval(renderList, 60_000); // relative times
}

// -- me and the connection --------------------------------------------------------------------

function renderMe() {
  const name = $("my-name");
  if (document.activeElement !== name) name.value = state.me.name ?? "";
  $("my-inbox-id").textContent = state.me.inboxId;
  $("my-inbox-id").title = state.me.inboxId;
  const avatar = $("my-avatar");
  avatar.className = `avatar ${hueClass(state.me.inboxId)}`;
  avatar.textContent = initials(state.me.name || "?");
}

async function saveName() {
  const input = $("my-name");
  const name = input.value.trim();
  if (!name || name === state.me.name) {
    input.value = state.me.name ?? "";
    return;
  }
  try {
    await call("setName", { name });
    state.me.name = name;
    renderMe();
    toasts.show("Name saved", { kind: "info" });
  } catch (error) {
    input.value = state.me.name ?? "";
    toasts.show(errorText(error));
  }
}

async function copy(text, done) {
  if (!text) return;
  if (await copyText(text)) toasts.show(done, { kind: "info" });
  else toasts.show(`Could not copy. Select it by hand: ${text}`);
}

function onStatus({ state: connection, error }) {
  const wasLost = state.lostConnection;
  state.status = connection;
  state.statusError = error ?? null;
  if (connection === "disconnected") state.lostConnection = true;
  if (connection === "connected") state.lostConnection = false;
  if (!state.me) return; // rendered once the chat is shown
  renderStatus();
  if (connection === "connected" && wasLost) refreshConversations();
}

function renderStatus() {
  const element = $("connection");
  element.dataset.state = state.status;
  const labels = {
    connected: "Connected",
    connecting: state.lostConnection ? "Reconnecting…" : "Connecting…",
    disconnected: "Offline · reconnecting automatically",
  };
  $("connection-label").textContent = labels[state.status] ?? state.status;
  element.title = state.statusError ? String(state.statusError) : "";
  // The conversation pane says so too: on a phone the list (and its status) is out of sight.
  $("offline-banner").hidden = state.status === "connected" || !state.lostConnection;
  $("offline-banner-text").textContent = state.status === "connecting" ? "Reconnecting…" : labels.disconnected;
}

// -- conversations ----------------------------------------------------------------------------

function renderList() {
  if (!list) return;
  const conversations = [...state.conversations.values()];
  list.render(conversations, { openId: state.openId, filter: state.filter });
  const unread = conversations.reduce((sum, c) => sum + (c.unread ?? 0), 0);
  document.title = unread ? `(${unread}) Veilpost` : "Veilpost";
}

function onConversation({ conversation }) {
  if (!conversation?.id) return;
  const known = state.conversations.get(conversation.id);
  // An event may carry an older snapshot of the last message than one already shown.
  if (known?.lastMessage && conversation.lastMessage && known.lastMessage.sentAt > conversation.lastMessage.sentAt) {
    conversation.lastMessage = known.lastMessage;
  }
  state.conversations.set(conversation.id, conversation);
  renderList();
  memberPanel?.update(conversation.id);
  if (conversation.id === state.openId) {
    renderHeader();
    view.conversation = conversation;
    maybeMarkRead();
  }
}

let refreshTimer = null;

function refreshConversationsSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshConversations, 250);
}

async function refreshConversations() {
  try {
    const { conversations } = await call("listConversations");
    for (const conversation of conversations) onConversation({ conversation });
  } catch (error) {
    console.warn("listConversations failed", error);
  }
}

function created(conversation) {
  onConversation({ conversation });
  goTo(conversation.id);
}

// -- messages ---------------------------------------------------------------------------------

function onMessage({ conversationId, message }) {
  if (!message?.id) return;
  const conversation = state.conversations.get(conversationId);
  const thread = state.threads.get(conversationId);
  const last = conversation?.lastMessage;
  const isNew = thread?.loaded
    ? !thread.byId.has(message.id)
    : !last || (last.id !== message.id && message.sentAt >= last.sentAt);
  if (thread) message = thread.insert(message);
  if (!conversation) {
    refreshConversationsSoon(); // a conversation this page has not heard of yet
  } else {
    if (!last || last.id === message.id || message.sentAt >= last.sentAt) conversation.lastMessage = message;
    if (isNew) conversation.updatedAt = Math.max(conversation.updatedAt ?? 0, message.sentAt ?? 0);
    if (isNew && !message.mine && message.kind !== "notice") {
      if (isVisible(conversationId)) scheduleMarkRead(conversationId);
      else conversation.unread = (conversation.unread ?? 0) + 1;
      announce(conversation, message);
    }
  }
  renderList();
  if (conversationId === state.openId && thread?.loaded) {
    renderThread({ scroll: isNew && message.mine ? "bottom" : "auto", incoming: isNew && !message.mine });
  }
}

function announce(conversation, message) {
  const who = message.senderName || "Someone";
  const what = preview({ ...conversation, kind: "dm", lastMessage: { ...message, mine: false } });
  const where = conversation.id === state.openId ? "" : ` in ${conversation.title}`;
  $("announcer").textContent = `New message from ${who}${where}: ${what}`;
}

function renderThread(options) {
  const thread = state.threads.get(state.openId);
  if (!thread) return;
  view.render(thread.shown, options);
}

/** A thread changed in place (an optimistic change, or its undo): show it if it is open. */
function rendered(conversationId) {
  if (conversationId === state.openId) renderThread({ scroll: "auto" });
}

// -- opening a conversation, and the address bar ------------------------------------------------

function route() {
  const hash = location.hash.slice(1);
  if (hash.startsWith("c/")) {
    const id = decodeURIComponent(hash.slice(2));
    if (state.conversations.has(id)) {
      openConversation(id);
      return;
    }
    history.replaceState(null, "", location.pathname + location.search);
  } else if (hash.startsWith("dm/")) {
    offerDm(decodeURIComponent(hash.slice(3)).trim());
    return;
  }
  if (state.openId) closeConversation();
}

function goTo(id) {
  const target = `#c/${encodeURIComponent(id)}`;
  if (location.hash === target) {
    openConversation(id);
  } else if (state.openId) {
    location.replace(target); // switching conversations does not pile up history entries
  } else {
    state.navigated = true;
    location.hash = target;
  }
}

function back() {
  if (state.navigated) {
    state.navigated = false;
    history.back();
  } else {
    history.replaceState(null, "", location.pathname + location.search);
    route();
  }
}

function offerDm(recipient) {
  history.replaceState(null, "", location.pathname + location.search);
  if (state.openId) closeConversation();
  if (!recipient) return;
  if (recipient === state.me.inboxId) {
    toasts.show("That is your own invite link: share it with someone else.", { kind: "info" });
    return;
  }
  const existing = [...state.conversations.values()].find((c) => c.kind === "dm" && c.peerInboxId === recipient);
  if (existing) {
    goTo(existing.id);
    return;
  }
  newChat.open({
    mode: "dm",
    recipient,
    offer: "You opened an invite link. Start an end-to-end encrypted chat with this inbox?",
  });
}

async function openConversation(id) {
  const conversation = state.conversations.get(id);
  if (!conversation) return;
  const input = $("composer-input");
  if (state.openId !== id) {
    if (state.openId) state.drafts.set(state.openId, input.value);
    state.openId = id;
    input.value = state.drafts.get(id) ?? "";
    setReply(null);
    view.reset(conversation);
  }
  $("app").classList.add("conversation-open");
  $("empty-pane").hidden = true;
  $("conversation").hidden = false;
  renderHeader();
  renderList();
  let thread = state.threads.get(id);
  if (!thread) {
    thread = new Thread();
    state.threads.set(id, thread);
  }
  if (!thread.loaded) await loadThread(id, thread);
  if (state.openId !== id) return;
  renderThread({ scroll: "bottom" });
  if (!NARROW.matches && !document.querySelector("dialog[open]")) input.focus({ preventScroll: true });
  else $("conversation-title").focus?.({ preventScroll: true });
  maybeMarkRead();
}

async function loadThread(id, thread) {
  $("messages-loading").hidden = false;
  try {
    await thread.load(call, id, PAGE_SIZE);
  } catch (error) {
    toasts.show(errorText(error));
  } finally {
    if (state.openId === id) $("messages-loading").hidden = true;
  }
}

function closeConversation() {
  const id = state.openId;
  if (id) state.drafts.set(id, $("composer-input").value);
  state.openId = null;
  setReply(null);
  view.reset(null);
  $("app").classList.remove("conversation-open");
  $("conversation").hidden = true;
  $("empty-pane").hidden = false;
  renderList();
  if (id) {
    const item = [...document.querySelectorAll("[data-testid=conversation]")].find((b) => b.dataset.conversationId === id);
    item?.focus({ preventScroll: true });
  }
}

function renderHeader() {
  const conversation = state.conversations.get(state.openId);
  if (!conversation) return;
  const group = conversation.kind === "group";
  const title = conversation.title || "Untitled";
  $("conversation-title").textContent = title;
  const count = conversation.members?.length ?? 0;
  const subtitle = group
    ? `Group · ${count} ${count === 1 ? "member" : "members"}`
    : `Direct message · ${shortId(conversation.peerInboxId, 12)}`;
  $("conversation-subtitle").textContent = conversation.active === false ? `${subtitle} · you are no longer a member` : subtitle;
  const avatar = $("conversation-avatar");
  avatar.className = `avatar ${hueClass(conversation.peerInboxId || conversation.id)}${group ? " group" : ""}`;
  avatar.textContent = initials(title);
  const active = conversation.active !== false;
  $("composer").hidden = !active;
  $("inactive-banner").hidden = active;
}

async function loadOlder() {
  const id = state.openId;
  const thread = state.threads.get(id);
  const button = $("load-older");
  if (!thread?.nextBefore || button.disabled) return;
  await withBusy(button, async () => {
    try {
      await thread.loadOlder(call, id, PAGE_SIZE);
      if (state.openId === id) renderThread({ scroll: "older" });
    } catch (error) {
      toasts.show(errorText(error));
    }
  });
  if (button.hidden && document.activeElement === document.body) $("message-list").focus?.();
}

// -- read receipts ----------------------------------------------------------------------------

function isVisible(id) {
  return id === state.openId && document.visibilityState === "visible" && !$("conversation").hidden;
}

let markTimer = null;

function scheduleMarkRead(id) {
  clearTimeout(markTimer);
  markTimer = setTimeout(async () => {
    if (!isVisible(id)) return;
    const conversation = state.conversations.get(id);
    if (conversation) conversation.unread = 0;
    renderList();
    try {
      await call("markRead", { conversationId: id });
    } catch (error) {
      // Read receipts are best effort: a toast for each one missed while offline would be noise.
      console.warn("markRead failed", error);
    }
  }, 300);
}

function maybeMarkRead() {
  const id = state.openId;
  if (id && (state.conversations.get(id)?.unread ?? 0) > 0 && isVisible(id)) scheduleMarkRead(id);
}

// -- sending ----------------------------------------------------------------------------------

function setReply(message) {
  state.replyTo = message
    ? { id: message.id, text: message.text || message.attachment?.filename || "", senderName: message.mine ? "You" : (message.senderName || "") }
    : null;
  const preview = $("reply-preview");
  preview.hidden = !state.replyTo;
  if (state.replyTo) {
    $("reply-preview-sender").textContent = `Replying to ${state.replyTo.senderName === "You" ? "yourself" : state.replyTo.senderName || "a message"}`;
    $("reply-preview-body").textContent = state.replyTo.text;
    $("composer-input").focus();
  }
}

function addPending(conversationId, fields) {
  const message = state.threads.get(conversationId)?.addPending(state.me, conversationId, fields);
  if (conversationId === state.openId) renderThread({ scroll: "bottom" });
  return message;
}

function dropPending(conversationId, message) {
  if (state.threads.get(conversationId)?.dropPending(message) && conversationId === state.openId) {
    renderThread({ scroll: "auto" });
  }
}

async function sendText() {
  const conversationId = state.openId;
  const conversation = state.conversations.get(conversationId);
  const input = $("composer-input");
  const text = input.value.replace(/^\s*\n/, "").trimEnd();
  if (!conversation || conversation.active === false || !text.trim()) return;
  const replyTo = state.replyTo;
  input.value = "";
  state.drafts.delete(conversationId);
  setReply(null);
  const pending = addPending(conversationId, { text, replyTo });
  try {
    const args = { conversationId, text };
    if (replyTo) args.replyTo = replyTo.id;
    const { message } = await call("send", args);
    dropPending(conversationId, pending);
    onMessage({ conversationId, message });
  } catch (error) {
    dropPending(conversationId, pending);
    toasts.show(errorText(error));
    if (state.openId === conversationId && !input.value) {
      input.value = text;
      if (replyTo) setReply({ ...replyTo, mine: replyTo.senderName === "You" });
    }
  }
}

async function sendFile(file) {
  const conversationId = state.openId;
  const conversation = state.conversations.get(conversationId);
  if (!conversation || conversation.active === false) return;
  if (file.size > MAX_ATTACHMENT) {
    toasts.show(`${file.name} is too large: attachments can be up to ${MAX_ATTACHMENT / (1024 * 1024)} MB.`);
    return;
  }
  const filename = file.name || "file";
  const mimeType = file.type || "application/octet-stream";
  const pending = addPending(conversationId, {
    kind: "attachment", attachment: { filename, mimeType, size: file.size, inline: false },
  });
  try {
    const data = bytesToBase64(new Uint8Array(await file.arrayBuffer()));
    const { message } = await call("sendAttachment", { conversationId, filename, mimeType, data });
    dropPending(conversationId, pending);
    onMessage({ conversationId, message });
  } catch (error) {
    dropPending(conversationId, pending);
    toasts.show(errorText(error));
  }
}

async function retry(message) {
  const conversationId = message.conversationId ?? state.openId;
  try {
    const sent = await state.threads.get(conversationId).retry(call, conversationId, message, () => rendered(conversationId));
    onMessage({ conversationId, message: sent });
  } catch (error) {
    toasts.show(errorText(error));
  }
}

async function react(message, emoji, remove) {
  const conversationId = message.conversationId ?? state.openId;
  try {
    await state.threads.get(conversationId).react(call, conversationId, message, emoji, remove, () => rendered(conversationId));
  } catch (error) {
    toasts.show(errorText(error));
  }
}

async function download(message, button) {
  const conversationId = message.conversationId ?? state.openId;
  await withBusy(button, async () => {
    try {
      const { filename, data } = await call("fetchAttachment", { conversationId, messageId: message.id });
      saveFile(data, filename || message.attachment?.filename);
    } catch (error) {
      toasts.show(errorText(error));
    }
  });
}

start();
