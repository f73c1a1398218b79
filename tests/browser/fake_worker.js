// A fake crypto worker: the protocol of docs/browser.md in memory, for developing and testing
// the page (static/chat/) without Pyodide or a relay. Load it with
// `tests/browser/fake_harness.py serve` (the page's data-worker points here).
//
// Query parameters of the worker URL (the harness forwards the page's query string):
//   scenario=fail    loading stops with progress {stage: "error"}; commands answer not_ready
//   scenario=crash   the module throws at the top level (the Worker fires `error`)
//   scenario=hang    loading never gets past "packages"
//   scenario=empty   a fresh profile: no conversations
//   scenario=flaky   the connection drops every 12 s (period=<seconds>) and comes back
//   incoming=1       someone writes in "Bob Okafor" a few seconds after start, then every 15 s
//   fast=1           no artificial delays while loading

const params = new URL(self.location.href).searchParams;
const scenario = params.get("scenario") ?? "default";
const fast = params.get("fast") === "1";
if (scenario === "crash") throw new Error("the fake worker crashed on purpose");

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, fast ? Math.min(ms, 20) : ms));
const post = (message) => self.postMessage(message);
const MINUTE = 60_000;
const now = Date.now();

function fingerprintOf(inboxId) {
  let seed = 0;
  for (const char of inboxId) seed = (seed * 131 + char.charCodeAt(0)) % 2147483647;
  const groups = [];
  for (let i = 0; i < 12; i += 1) {
    seed = (seed * 48271) % 2147483647;
    groups.push(String(seed % 100000).padStart(5, "0"));
  }
  return groups.join(" ");
}

const ME = {
  inboxId: "3f9a1c0b7e2d4a6f8b1c9d0e2f4a6b8c",
  installationId: "3f9a1c0b7e2d4a6f8b1c9d0e2f4a6b8c",
  name: "Sam Rivera",
  link: `${self.location.origin}/#dm/3f9a1c0b7e2d4a6f8b1c9d0e2f4a6b8c`,
};
const PEOPLE = {
  alice: { inboxId: "a11ce5e7c0ffee0a11ce5e7c0ffee001", name: "Alice Chen" },
  bob: { inboxId: "b0b0b0b01234567890abcdef0b0b0b0b", name: "Bob Okafor" },
  carmen: { inboxId: "ca4e11a0c0a7e5a1a1a1c0ffee123456", name: "Carmen Díaz" },
  bot: { inboxId: "0b07a9e47a9e47a9e47a9e47a9e47a90", name: "Support bot" },
  mallory: { inboxId: "ma110ryma110ryma110ryma110ry0000", name: "<script>alert(1)</script>Mallory" },
};

function member(person, role = "member") {
  const isMe = person.inboxId === ME.inboxId;
  return { inboxId: person.inboxId, name: isMe ? ME.name : person.name, fingerprint: fingerprintOf(person.inboxId), isMe, role };
}

// -- the store -----------------------------------------------------------------------------

const conversations = new Map(); // id -> {conversation fields…, messages: []}
const attachments = new Map(); // message id -> {filename, mimeType, data}
let nextId = 1;

function newMessage(conversation, fields) {
  const from = fields.from ?? ME;
  const mine = from.inboxId === ME.inboxId;
  const message = {
    id: fields.id ?? `m${nextId++}`,
    conversationId: conversation.id,
    senderInboxId: from.inboxId,
    senderName: mine ? ME.name : from.name,
    mine,
    kind: fields.kind ?? "text",
    text: fields.text ?? "",
    status: fields.status ?? (mine ? "sent" : "received"),
    sentAt: fields.sentAt ?? Date.now(),
    replyTo: null,
    reactions: fields.reactions ?? [],
    attachment: fields.attachment ?? null,
    readBy: fields.readBy ?? [],
  };
  if (fields.replyTo) {
    const original = conversation.messages.find((m) => m.id === fields.replyTo);
    if (original) message.replyTo = { id: original.id, text: original.text || original.attachment?.filename || "", senderName: original.senderName };
  }
  conversation.messages.push(message);
  conversation.updatedAt = Math.max(conversation.updatedAt, message.sentAt);
  return message;
}

function newConversation(fields) {
  const conversation = {
    id: fields.id ?? `c${nextId++}`,
    kind: fields.kind,
    name: fields.name ?? "",
    description: "",
    peerInboxId: fields.peer?.inboxId ?? null,
    members: fields.members,
    myRole: fields.myRole ?? (fields.kind === "dm" ? "member" : "super_admin"),
    active: true,
    unread: fields.unread ?? 0,
    updatedAt: fields.updatedAt ?? 0,
    messages: [],
  };
  conversations.set(conversation.id, conversation);
  return conversation;
}

function titleOf(conversation) {
  if (conversation.name) return conversation.name;
  if (conversation.kind === "dm") {
    const peer = conversation.members.find((m) => !m.isMe);
    return peer?.name || `${(conversation.peerInboxId ?? "").slice(0, 8)}…`;
  }
  return "Untitled group";
}

function publicConversation(conversation) {
  const { messages, ...rest } = conversation;
  return {
    ...structuredClone(rest),
    title: titleOf(conversation),
    members: structuredClone(conversation.members.map((m) => (m.isMe ? { ...m, name: ME.name } : m))),
    lastMessage: messages.length ? publicMessage(messages.at(-1)) : null,
  };
}

function publicMessage(message) {
  return structuredClone(message);
}

function emitMessage(conversation, message) {
  post({ event: "message", conversationId: conversation.id, message: publicMessage(message) });
}

function emitConversation(conversation) {
  post({ event: "conversation", conversation: publicConversation(conversation) });
}

function find(id) {
  const conversation = conversations.get(id);
  if (!conversation) throw Object.assign(new Error(`no conversation ${id}`), { code: "unknown_conversation" });
  return conversation;
}

function findMessage(conversation, id) {
  const message = conversation.messages.find((m) => m.id === id);
  if (!message) throw Object.assign(new Error(`no message ${id}`), { code: "unknown_message" });
  return message;
}

function fail(code, message) {
  throw Object.assign(new Error(message), { code });
}

// -- canned conversations --------------------------------------------------------------------

async function picture() {
  const canvas = new OffscreenCanvas(480, 300);
  const g = canvas.getContext("2d");
  const gradient = g.createLinearGradient(0, 0, 480, 300);
  gradient.addColorStop(0, "#6366f1");
  gradient.addColorStop(1, "#ec4899");
  g.fillStyle = gradient;
  g.fillRect(0, 0, 480, 300);
  g.fillStyle = "rgba(255,255,255,0.85)";
  g.beginPath();
  g.arc(360, 90, 44, 0, Math.PI * 2);
  g.fill();
  g.fillStyle = "rgba(20,20,40,0.35)";
  g.beginPath();
  g.moveTo(0, 300);
  g.lineTo(150, 150);
  g.lineTo(260, 240);
  g.lineTo(340, 170);
  g.lineTo(480, 300);
  g.fill();
  const blob = await canvas.convertToBlob({ type: "image/png" });
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return { data: btoa(binary), size: bytes.length };
}

const FILLER = [
  "Morning! Coffee later?", "Sure, 10:30 works.", "Did you see the new build?", "Yes, the loading is much faster now.",
  "Let's ship it on Thursday.", "👍", "I'll write the release notes.", "Thanks!", "Can you check the Android layout?",
  "On it.", "Looks good on my phone.", "Great, merging.",
];

async function seed() {
  if (scenario === "empty") return;
  const alice = newConversation({ id: "dm-alice", kind: "dm", peer: PEOPLE.alice, members: [member(ME), member(PEOPLE.alice)] });
  // Old history: enough for "load older".
  for (let i = 0; i < 64; i += 1) {
    newMessage(alice, { from: i % 2 ? ME : PEOPLE.alice, text: `${FILLER[i % FILLER.length]} (#${i + 1})`, sentAt: now - (3 * 24 * 60 - i * 20) * MINUTE });
  }
  newMessage(alice, { from: PEOPLE.alice, text: "Did you get the slides for tomorrow?", sentAt: now - 95 * MINUTE });
  const yes = newMessage(alice, { from: ME, text: "Yes! Looking at them now.\nThe second chart needs a legend.", sentAt: now - 93 * MINUTE, reactions: [{ emoji: "❤️", count: 1, mine: false }] });
  const image = await picture();
  const photo = newMessage(alice, {
    from: PEOPLE.alice, kind: "attachment", text: "", sentAt: now - 40 * MINUTE,
    attachment: { filename: "mountains.png", mimeType: "image/png", size: image.size, inline: true, data: image.data },
  });
  attachments.set(photo.id, { filename: "mountains.png", mimeType: "image/png", data: image.data });
  newMessage(alice, { from: ME, text: "Love the colours 😍", replyTo: photo.id, sentAt: now - 38 * MINUTE });
  newMessage(alice, { from: PEOPLE.alice, text: 'This should show as text: <img src=x onerror="window.__pwned=1"> and <b>not bold</b>', sentAt: now - 12 * MINUTE });
  newMessage(alice, { from: PEOPLE.alice, text: "And a long link: https://example.org/a/very/long/path/that/should/wrap/nicely/without/breaking/the/layout?query=1&other=2", sentAt: now - 11 * MINUTE });
  newMessage(alice, { from: ME, text: "Perfect, see you tomorrow", replyTo: yes.id, sentAt: now - 9 * MINUTE, readBy: [PEOPLE.alice.inboxId] });

  const design = newConversation({
    id: "g-design", kind: "group", name: "Design team", unread: 3, myRole: "admin",
    members: [member(ME, "admin"), member(PEOPLE.alice, "super_admin"), member(PEOPLE.bob), member(PEOPLE.carmen)],
  });
  newMessage(design, { from: PEOPLE.alice, kind: "notice", text: "Alice Chen created the group", sentAt: now - 26 * 60 * MINUTE });
  newMessage(design, { from: PEOPLE.alice, kind: "notice", text: "Alice Chen added Sam Rivera, Bob Okafor and Carmen Díaz", sentAt: now - 26 * 60 * MINUTE + 1000 });
  const brief = newMessage(design, { from: PEOPLE.alice, text: "Welcome all! Here is the brief for the new onboarding.", sentAt: now - 25 * 60 * MINUTE });
  const pdf = newMessage(design, {
    from: PEOPLE.alice, kind: "attachment", sentAt: now - 25 * 60 * MINUTE + 20_000,
    attachment: { filename: "onboarding-brief.pdf", mimeType: "application/pdf", size: 284_211, inline: false },
  });
  attachments.set(pdf.id, { filename: "onboarding-brief.pdf", mimeType: "application/pdf", data: btoa("%PDF-1.4 fake brief\n") });
  newMessage(design, { from: PEOPLE.bob, text: "Thanks! I'll have sketches by Friday.", sentAt: now - 24 * 60 * MINUTE, reactions: [{ emoji: "👍", count: 3, mine: true }, { emoji: "🎉", count: 1, mine: false }] });
  newMessage(design, { from: ME, text: "Draft posted in the shared folder?", status: "failed", sentAt: now - 70 * MINUTE });
  newMessage(design, { from: PEOPLE.carmen, text: "Quick question about the colour palette", sentAt: now - 30 * MINUTE });
  newMessage(design, { from: PEOPLE.carmen, text: "Should we keep the indigo accent or go warmer?", sentAt: now - 29 * MINUTE });
  newMessage(design, { from: PEOPLE.bob, text: "Indigo, it tests better for contrast.", replyTo: brief.id, sentAt: now - 5 * MINUTE });

  const bob = newConversation({ id: "dm-bob", kind: "dm", peer: PEOPLE.bob, unread: 2, members: [member(ME), member(PEOPLE.bob)] });
  newMessage(bob, { from: ME, text: "Are we still on for the review?", sentAt: now - 190 * MINUTE });
  newMessage(bob, { from: PEOPLE.bob, text: "Yes", sentAt: now - 130 * MINUTE });
  newMessage(bob, { from: PEOPLE.bob, text: "Can we move it to 4pm?", sentAt: now - 128 * MINUTE });

  const launch = newConversation({
    id: "g-launch", kind: "group", name: '<b>Launch</b> & "friends" <img src=x onerror="window.__pwned=2">', myRole: "member",
    members: [member(ME), member(PEOPLE.bob, "super_admin"), member(PEOPLE.mallory)],
  });
  newMessage(launch, { from: PEOPLE.mallory, text: "<script>window.__pwned=3</script> hi", sentAt: now - 28 * 60 * MINUTE });

  const bot = newConversation({ id: "dm-bot", kind: "dm", peer: PEOPLE.bot, members: [member(ME), member(PEOPLE.bot)] });
  newMessage(bot, { from: ME, text: "How do I verify a contact?", sentAt: now - 6 * 24 * 60 * MINUTE });
  newMessage(bot, { from: PEOPLE.bot, kind: "markdown", text: "**Compare safety numbers**: open the members panel and read the twelve groups of digits aloud.", sentAt: now - 6 * 24 * 60 * MINUTE + 4000 });
  newMessage(bot, { from: PEOPLE.bot, kind: "unknown", text: "[poll] Was this helpful? yes / no", sentAt: now - 6 * 24 * 60 * MINUTE + 6000 });
}

// -- commands ------------------------------------------------------------------------------

function resolveRecipient(recipient) {
  const text = String(recipient ?? "").trim();
  const fromLink = text.match(/#dm\/([0-9a-z]+)/i);
  const id = fromLink ? fromLink[1] : text;
  if (/unknown|nobody/i.test(id)) fail("unknown_recipient", `no inbox found for ${id}`);
  if (id.length < 6) fail("invalid_recipient", `"${id}" is not an inbox id, a 0x address or an invite link`);
  const known = Object.values(PEOPLE).find((p) => p.inboxId === id || p.name.toLowerCase() === id.toLowerCase());
  if (known) return known;
  if (/^0x[0-9a-f]{40}$/i.test(id)) return { inboxId: `addr${id.slice(2, 30)}`, name: "" };
  return { inboxId: id, name: "" };
}

function notice(conversation, text) {
  const message = newMessage(conversation, { from: ME, kind: "notice", text });
  emitMessage(conversation, message);
}

function requireAdmin(conversation) {
  if (conversation.myRole === "member") fail("permission_denied", "only admins can change this group");
  if (!conversation.active) fail("not_a_member", "you are not a member of this conversation");
}

function later(ms, fn) {
  setTimeout(fn, ms);
}

function peerReply(conversation, text) {
  const peer = conversation.members.find((m) => !m.isMe);
  if (!peer || conversation.kind !== "dm") return;
  later(1600, () => {
    const message = newMessage(conversation, { from: { inboxId: peer.inboxId, name: peer.name }, text: `Echo: ${text}` });
    conversation.unread += 1;
    emitMessage(conversation, message);
  });
}

function markReadLater(conversation, message) {
  const peer = conversation.members.find((m) => !m.isMe);
  if (!peer) return;
  later(2800, () => {
    message.readBy = [peer.inboxId];
    emitMessage(conversation, message);
  });
}

function deliver(conversation, message) {
  later(700, () => {
    message.status = /fail/i.test(message.text) ? "failed" : "sent";
    emitMessage(conversation, message);
    if (message.status === "sent") markReadLater(conversation, message);
  });
}

const commands = {
  hello: () => ({ ...ME }),
  setName: ({ name }) => {
    if (!String(name ?? "").trim()) fail("invalid_name", "a name cannot be empty");
    ME.name = String(name).trim();
    for (const conversation of conversations.values()) emitConversation(conversation);
    return {};
  },
  listConversations: () => ({
    conversations: [...conversations.values()].sort((a, b) => b.updatedAt - a.updatedAt).map(publicConversation),
  }),
  messages: ({ conversationId, limit = 50, before = null }) => {
    const all = find(conversationId).messages;
    const end = before === null || before === undefined ? all.length : Number(before);
    const start = Math.max(0, end - limit);
    return { messages: all.slice(start, end).map(publicMessage), nextBefore: start > 0 ? String(start) : null };
  },
  send: ({ conversationId, text, replyTo }) => {
    const conversation = find(conversationId);
    if (!conversation.active) fail("not_a_member", "you are not a member of this conversation");
    if (/relay down/i.test(text)) fail("relay_unavailable", "the relay did not answer (fake)");
    const message = newMessage(conversation, { from: ME, text, replyTo, status: "sending" });
    deliver(conversation, message);
    peerReply(conversation, text);
    return { message: publicMessage(message) };
  },
  sendAttachment: ({ conversationId, filename, mimeType, data }) => {
    const conversation = find(conversationId);
    const size = Math.floor((data.length * 3) / 4) - (data.endsWith("==") ? 2 : data.endsWith("=") ? 1 : 0);
    const inline = /^image\/(png|jpeg|gif|webp)$/.test(mimeType) && size < 1_000_000;
    const message = newMessage(conversation, {
      from: ME, kind: "attachment", status: "sending",
      attachment: { filename, mimeType, size, inline, ...(inline ? { data } : {}) },
    });
    attachments.set(message.id, { filename, mimeType, data });
    deliver(conversation, message);
    return { message: publicMessage(message) };
  },
  fetchAttachment: ({ conversationId, messageId }) => {
    findMessage(find(conversationId), messageId);
    const stored = attachments.get(messageId);
    if (!stored) fail("attachment_unavailable", "the attachment has expired on the relay");
    return { ...stored };
  },
  react: ({ conversationId, messageId, emoji, remove }) => {
    const conversation = find(conversationId);
    const message = findMessage(conversation, messageId);
    const found = message.reactions.find((r) => r.emoji === emoji);
    if (remove) {
      if (found?.mine) {
        found.count -= 1;
        found.mine = false;
      }
      message.reactions = message.reactions.filter((r) => r.count > 0);
    } else if (!found) {
      message.reactions.push({ emoji, count: 1, mine: true });
    } else if (!found.mine) {
      found.count += 1;
      found.mine = true;
    }
    emitMessage(conversation, message);
    return {};
  },
  markRead: ({ conversationId }) => {
    find(conversationId).unread = 0;
    return {};
  },
  retry: ({ conversationId, messageId }) => {
    const conversation = find(conversationId);
    const message = findMessage(conversation, messageId);
    message.status = "sending";
    later(600, () => {
      message.status = "sent";
      emitMessage(conversation, message);
    });
    return { message: publicMessage(message) };
  },
  newDm: ({ recipient }) => {
    const peer = resolveRecipient(recipient);
    if (peer.inboxId === ME.inboxId) fail("invalid_recipient", "that is your own inbox");
    const existing = [...conversations.values()].find((c) => c.kind === "dm" && c.peerInboxId === peer.inboxId);
    if (existing) return { conversation: publicConversation(existing) };
    const conversation = newConversation({ kind: "dm", peer, members: [member(ME), member(peer)] });
    emitConversation(conversation);
    return { conversation: publicConversation(conversation) };
  },
  newGroup: ({ name, members }) => {
    const people = (members ?? []).map(resolveRecipient);
    const conversation = newConversation({ kind: "group", name, members: [member(ME, "super_admin"), ...people.map((p) => member(p))] });
    newMessage(conversation, { from: ME, kind: "notice", text: "You created the group" });
    emitConversation(conversation);
    return { conversation: publicConversation(conversation) };
  },
  addMembers: ({ conversationId, members }) => {
    const conversation = find(conversationId);
    requireAdmin(conversation);
    const people = members.map(resolveRecipient).filter((p) => !conversation.members.some((m) => m.inboxId === p.inboxId));
    conversation.members.push(...people.map((p) => member(p)));
    emitConversation(conversation);
    notice(conversation, `You added ${people.map((p) => p.name || p.inboxId.slice(0, 8)).join(", ") || "nobody new"}`);
    return {};
  },
  removeMembers: ({ conversationId, members }) => {
    const conversation = find(conversationId);
    requireAdmin(conversation);
    const removed = conversation.members.filter((m) => members.includes(m.inboxId));
    conversation.members = conversation.members.filter((m) => !members.includes(m.inboxId));
    emitConversation(conversation);
    notice(conversation, `You removed ${removed.map((m) => m.name).join(", ")}`);
    return {};
  },
  rename: ({ conversationId, name }) => {
    const conversation = find(conversationId);
    requireAdmin(conversation);
    conversation.name = name;
    emitConversation(conversation);
    notice(conversation, `You renamed the group to "${name}"`);
    return {};
  },
  leave: ({ conversationId }) => {
    const conversation = find(conversationId);
    if (!conversation.active) fail("not_a_member", "you already left");
    notice(conversation, "You left the group");
    conversation.active = false;
    conversation.members = conversation.members.filter((m) => !m.isMe);
    emitConversation(conversation);
    return {};
  },
};

// -- loading and the connection ----------------------------------------------------------------

function progress(stage, detail = null) {
  post({ event: "progress", stage, detail });
}

function status(state, error = null) {
  post({ event: "status", state, error });
}

async function boot() {
  progress("runtime", "Pyodide 0.0 (fake)");
  await sleep(400);
  progress("packages", "veilpost-0.0-py3-none-any.whl");
  await sleep(scenario === "hang" ? 1e9 : 400);
  if (scenario === "fail") {
    await sleep(300);
    progress("error", "Failed to fetch /static/wasm/manifest.json: 404 Not Found (fake)");
    throw new Error("fake boot failure");
  }
  progress("state", "Decrypting your saved profile");
  await seed();
  await sleep(300);
  progress("connecting", null);
  status("connecting");
  await sleep(300);
  status("connected");
  progress("ready", null);
}

function incoming() {
  const bob = conversations.get("dm-bob");
  if (!bob) return;
  const lines = ["Ping!", "Are you around?", "Sending the notes now", "👀"];
  let index = 0;
  const write = () => {
    const message = newMessage(bob, { from: PEOPLE.bob, text: lines[index++ % lines.length] });
    bob.unread += 1;
    emitMessage(bob, message);
  };
  later(3000, write);
  setInterval(write, 15_000);
}

function flaky() {
  const period = Number(params.get("period") ?? 12) * 1000;
  setInterval(async () => {
    status("disconnected", "WebSocket closed (1006)");
    await new Promise((resolve) => setTimeout(resolve, period / 4));
    status("connecting");
    await new Promise((resolve) => setTimeout(resolve, period / 12));
    status("connected");
  }, period);
}

const ready = boot();
ready.then(() => {
  if (params.get("incoming") === "1") incoming();
  if (scenario === "flaky") flaky();
}, () => {});

self.onmessage = async ({ data: { id, cmd, args } }) => {
  try {
    await ready;
  } catch (error) {
    post({ id, ok: false, error: { code: "not_ready", message: String(error.message) } });
    return;
  }
  await sleep(30 + Math.random() * 120);
  const command = commands[cmd];
  try {
    if (!command) fail("unknown_command", `no command ${cmd}`);
    post({ id, ok: true, result: command(args ?? {}) });
  } catch (error) {
    post({ id, ok: false, error: { code: error.code ?? "error", message: String(error.message) } });
  }
};
