// The agent widget's page (/widget), inside the iframe that static/widget/veilpost-widget.js
// puts on another site: one end-to-end-encrypted DM with one agent, through the same crypto
// worker as the web chat (static/chat/worker.js). The embedding page cannot read any of it:
// the iframe is another origin.
//
// Its settings come in the URL's fragment (never sent to a server): `agent` (an inbox id or a
// 0x address; required), `title`, `greeting` (shown locally above the conversation, not sent)
// and `color` (the accent colour). Messages to the embedding page: `veilpost:loaded` (this
// page runs), `veilpost:close` (the close button or Esc), `veilpost:unread` ({count}, while the
// panel is closed), `veilpost:ready`.
// From it: `veilpost:open` / `veilpost:closed` (the panel was shown or hidden).
//
// data-testid attributes for tests: widget (data-state = loading | problem | ready |
// unknown-agent | storage-blocked), widget-title, widget-status, widget-loading, widget-problem
// (with widget-problem-title, widget-problem-text, widget-retry, widget-own-window),
// widget-greeting, widget-typing,
// widget-close, and those of the chat's message list and composer (message, message-text,
// composer, send-button, reply-preview, offline-banner).

import { MessageView } from "../chat/messages.js";
import { Thread } from "../chat/thread.js";
import { $, bindComposer, errorText, fillIcons, hueClass, initials, saveFile, Toasts } from "../chat/ui.js";
import { WorkerClient } from "../chat/worker-client.js";

const PAGE_SIZE = 50;
const REPLY_WAIT = 45_000; // how long "the agent is replying" is shown after a message
const STAGES = ["runtime", "packages", "state", "connecting", "ready"];
const STAGE_TEXT = {
  runtime: "Loading the encryption engine…",
  packages: "Loading the encryption engine…",
  state: "Opening your encrypted profile…",
  connecting: "Connecting securely…",
  ready: "Starting the conversation…",
  shared: "This chat is open in another tab: sharing it.",
};

const settings = Object.fromEntries(new URLSearchParams(location.hash.slice(1)));
const state = {
  me: null,
  conversation: null,
  thread: new Thread(),
  status: "connecting",
  lostConnection: false,
  replyTo: null,
  open: window.parent === window, // shown: when framed, until the embedder says otherwise
  unread: 0,
  waitingSince: 0, // when my last message went out while no reply has come since
};
let client;
let view;
let toasts;
let typingTimer = null;

// -- the embedding page ----------------------------------------------------------------------

function tellParent(type, fields = {}) {
  // The embedder's origin is unknown (any site may frame the widget): nothing private is sent.
  if (window.parent !== window) window.parent.postMessage({ type, ...fields }, "*");
}

window.addEventListener("message", (event) => {
  if (event.source !== window.parent || typeof event.data?.type !== "string") return;
  if (event.data.type === "veilpost:open") {
    state.open = true;
    state.unread = 0;
    tellParent("veilpost:unread", { count: 0 });
    markRead();
    if (state.conversation) $("composer-input").focus({ preventScroll: true });
  } else if (event.data.type === "veilpost:closed") {
    state.open = false;
  }
});

// -- the states of the panel -----------------------------------------------------------------

function show(which) {
  $("widget").dataset.state = which;
  $("widget-status").hidden = which !== "loading" && which !== "ready";
  $("widget-loading").hidden = which !== "loading";
  $("widget-problem").hidden = !["problem", "unknown-agent", "storage-blocked"].includes(which);
  $("widget-chat").hidden = which !== "ready";
}

function problem(title, text, { state: which = "problem", retry = true } = {}) {
  $("widget-problem-title").textContent = title;
  $("widget-problem-text").textContent = text;
  $("widget-retry").hidden = !retry;
  show(which);
}

function progress(stage, detail) {
  if (state.conversation) return;
  if (stage === "error") {
    relayProblem(String(detail ?? ""));
    return;
  }
  const at = STAGES.indexOf(stage);
  if (at >= 0) $("widget-progress").value = at + 1;
  $("widget-loading-text").textContent = STAGE_TEXT[stage] ?? "Loading…";
}

function relayProblem(detail) {
  problem(
    "The chat service cannot be reached",
    "The connection to the relay failed. Check your connection; the chat will start when it is back."
      + (detail ? ` (${detail})` : ""),
  );
}

function renderStatus() {
  const labels = {
    connected: "End-to-end encrypted",
    connecting: state.lostConnection ? "Reconnecting…" : "Connecting…",
    disconnected: "Offline · reconnecting",
  };
  const element = $("widget-status");
  element.dataset.state = state.status;
  $("widget-status-text").textContent = labels[state.status] ?? state.status;
  $("offline-banner").hidden = state.status === "connected" || !state.lostConnection;
}

function renderHeader() {
  const title = settings.title || state.conversation?.title || "Chat";
  $("widget-title").textContent = title;
  const avatar = $("widget-avatar");
  avatar.className = `avatar ${hueClass(settings.agent ?? "")}`;
  avatar.textContent = initials(title);
}

// -- start -----------------------------------------------------------------------------------

function start() {
  tellParent("veilpost:loaded");
  fillIcons();
  toasts = new Toasts($("toasts"));
  if (settings.color && CSS.supports("color", settings.color)) {
    const root = document.documentElement.style;
    root.setProperty("--accent", settings.color);
    root.setProperty("--mine", settings.color);
    root.setProperty("--accent-hover", `color-mix(in srgb, ${settings.color} 85%, black)`);
    root.setProperty("--accent-soft", `color-mix(in srgb, ${settings.color} 12%, transparent)`);
  }
  renderHeader();
  $("widget-close").addEventListener("click", () => {
    if (window.parent !== window) tellParent("veilpost:close");
    else window.close(); // the chat's own window (see storageBlocked): a script opened it
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !event.defaultPrevented) tellParent("veilpost:close"); // not a reply's Esc
  });
  $("widget-retry").addEventListener("click", () => location.reload());
  if (!settings.agent) {
    problem("This chat is not set up", "The page that embeds it names no agent (data-agent).", { retry: false });
    return;
  }
  storageAllowed().then((allowed) => {
    if (allowed) startWorker();
    else storageBlocked();
  });
}

// A browser that blocks storage for sites embedded in others (a private window, strict
// tracking protection) leaves the chat nowhere to keep its keys: then it offers its own window,
// where the relay's origin is the site and storage works. (The Storage Access API would need
// the visitor to have used the relay as a site before.)
async function storageAllowed() {
  try {
    await navigator.locks.query();
    await new Promise((resolve, reject) => {
      const request = indexedDB.open("veilpost-probe");
      request.onsuccess = () => {
        request.result.close();
        resolve();
      };
      request.onerror = () => reject(request.error);
    });
    return true;
  } catch (error) {
    console.info("veilpost widget: no storage in this frame", error);
    return false;
  }
}

function storageBlocked() {
  problem(
    "Open the chat in its own window",
    "This browser does not let chats embedded in other sites keep their keys (private windows do this). In its own window the chat is just as private.",
    { state: "storage-blocked", retry: false },
  );
  const button = $("widget-own-window");
  button.hidden = false;
  button.addEventListener("click", () => {
    const popup = window.open(location.href, "veilpost-widget", "popup,width=420,height=680");
    if (popup) tellParent("veilpost:close");
    else toasts.show("The window was blocked: allow pop-ups for this site, then try again.");
  });
}

// The widget's identity is one per agent, apart from the web chat's and from the other agents'
// (worker.js?profile=…): a site that opens /widget with an agent of its choosing only ever
// meets a fresh anonymous inbox, never the visitor's chat profile or another agent's chat.
async function profileName(agent) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(agent.trim().toLowerCase()));
  return `widget-${Array.from(new Uint8Array(digest).slice(0, 16), (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

async function startWorker() {
  const script = document.querySelector("script[data-worker]");
  const url = new URL(script?.dataset.worker || "/static/chat/worker.js", location.href);
  url.searchParams.set("profile", await profileName(settings.agent));
  try {
    client = new WorkerClient(url.href);
  } catch (error) {
    problem("This browser cannot run the chat", String(error?.message ?? error), { retry: false });
    return;
  }
  client.on("progress", ({ stage, detail }) => progress(stage, detail));
  client.on("status", ({ state: connection }) => {
    state.status = connection;
    if (connection === "disconnected") state.lostConnection = true;
    if (connection === "connected") state.lostConnection = false;
    renderStatus();
  });
  client.on("message", onMessage);
  client.on("conversation", ({ conversation }) => {
    if (conversation?.id !== state.conversation?.id) return;
    state.conversation = conversation;
    view.conversation = conversation;
    renderHeader();
  });
  client.on("crash", ({ message }) => problem("The chat stopped", message || "The encryption worker stopped."));
  boot();
}

async function boot() {
  try {
    state.me = await client.call("hello");
  } catch (error) {
    relayProblem(errorText(error));
    return;
  }
  let conversation;
  try {
    ({ conversation } = await client.call("newDm", { recipient: settings.agent }));
  } catch (error) {
    if (error.code === "unknown_recipient" || error.code === "invalid_args") {
      problem("This agent could not be found", "The agent this chat is for is not known to the relay. The site may have a wrong setting.", { state: "unknown-agent", retry: false });
    } else if (error.code === "relay_unavailable") {
      relayProblem("");
    } else {
      problem("The agent cannot be reached right now", errorText(error));
    }
    return;
  }
  state.conversation = conversation;
  setUp();
  renderHeader();
  show("ready");
  renderStatus();
  try {
    await state.thread.load(call, conversation.id, PAGE_SIZE);
  } catch (error) {
    toasts.show(errorText(error));
  }
  render({ scroll: "bottom" });
  markRead();
  tellParent("veilpost:ready");
  if (state.open) $("composer-input").focus({ preventScroll: true });
}

function call(cmd, args) {
  return client.call(cmd, args);
}

function setUp() {
  view = new MessageView({
    scroller: $("message-scroller"),
    list: $("message-list"),
    loadOlder: $("load-older"),
    jumpLatest: $("jump-latest"),
    actions: { reply: setReply, react, retry, download, missing: () => toasts.show("That message is not loaded.", { kind: "info" }) },
  });
  view.reset(state.conversation);
  if (settings.greeting) {
    $("widget-greeting").textContent = settings.greeting;
    $("widget-greeting").hidden = false;
  }
  $("load-older").addEventListener("click", async () => {
    try {
      await state.thread.loadOlder(call, state.conversation.id, PAGE_SIZE);
      render({ scroll: "older" });
    } catch (error) {
      toasts.show(errorText(error));
    }
  });
  $("reply-cancel").addEventListener("click", () => setReply(null));
  bindComposer($("composer"), $("composer-input"), { send: sendText, replying: () => state.replyTo, cancelReply: () => setReply(null) });
}

// -- messages --------------------------------------------------------------------------------

function render(options = { scroll: "auto" }) {
  // Group notices ("… added …", from setting up the DM) say nothing to a visitor.
  const { messages, nextBefore } = state.thread.shown;
  view.render({ messages: messages.filter((m) => m.kind !== "notice"), nextBefore }, options);
  renderTyping();
}

function onMessage({ conversationId, message }) {
  if (conversationId !== state.conversation?.id || !message?.id) return;
  const isNew = !state.thread.byId.has(message.id);
  state.thread.insert(message);
  if (isNew && !message.mine && message.kind !== "notice") {
    state.waitingSince = 0;
    if (state.open && document.visibilityState === "visible") markRead();
    else tellParent("veilpost:unread", { count: ++state.unread });
    $("announcer").textContent = `New message: ${message.text ?? ""}`;
  }
  render({ scroll: isNew && message.mine ? "bottom" : "auto", incoming: isNew && !message.mine });
}

// "The agent is replying…" from my message until the agent's next one (or REPLY_WAIT): the
// widget's stand-in for a typing indicator, which the protocol does not carry.
function renderTyping() {
  clearTimeout(typingTimer);
  const waiting = state.waitingSince && Date.now() - state.waitingSince < REPLY_WAIT;
  $("widget-typing").hidden = !waiting;
  if (waiting) typingTimer = setTimeout(renderTyping, REPLY_WAIT - (Date.now() - state.waitingSince));
}

let marking = null;

function markRead() {
  if (!state.conversation || marking) return;
  marking = call("markRead", { conversationId: state.conversation.id })
    .catch((error) => console.warn("markRead failed", error))
    .finally(() => { marking = null; });
}

function setReply(message) {
  state.replyTo = message
    ? { id: message.id, text: message.text || message.attachment?.filename || "", senderName: message.mine ? "You" : (message.senderName || "") }
    : null;
  $("reply-preview").hidden = !state.replyTo;
  if (state.replyTo) {
    $("reply-preview-sender").textContent = state.replyTo.senderName === "You" ? "Replying to yourself" : "Replying";
    $("reply-preview-body").textContent = state.replyTo.text;
  }
  $("composer-input").focus();
}

async function sendText() {
  const input = $("composer-input");
  const text = input.value.replace(/^\s*\n/, "").trimEnd();
  const conversationId = state.conversation?.id;
  if (!conversationId || !text.trim()) return;
  const replyTo = state.replyTo;
  input.value = "";
  setReply(null);
  const pending = state.thread.addPending(state.me, conversationId, { text, replyTo });
  state.waitingSince = Date.now();
  render({ scroll: "bottom" });
  try {
    const args = { conversationId, text };
    if (replyTo) args.replyTo = replyTo.id;
    const { message } = await call("send", args);
    state.thread.dropPending(pending);
    onMessage({ conversationId, message });
  } catch (error) {
    state.thread.dropPending(pending);
    state.waitingSince = 0;
    render();
    toasts.show(errorText(error));
    if (!input.value) input.value = text;
  }
}

async function retry(message) {
  const conversationId = state.conversation.id;
  try {
    onMessage({ conversationId, message: await state.thread.retry(call, conversationId, message, render) });
  } catch (error) {
    toasts.show(errorText(error));
  }
}

async function react(message, emoji, remove) {
  try {
    await state.thread.react(call, state.conversation.id, message, emoji, remove, render);
  } catch (error) {
    toasts.show(errorText(error));
  }
}

async function download(message) {
  try {
    const { filename, data } = await call("fetchAttachment", { conversationId: state.conversation.id, messageId: message.id });
    saveFile(data, filename || message.attachment?.filename);
  } catch (error) {
    toasts.show(errorText(error));
  }
}

start();
