// DOM and formatting helpers of the web chat.
//
// Everything that puts remote data (message text, names, file names, group names) into the page
// goes through `h()`, which sets text with `createTextNode` and attributes with `setAttribute`:
// there is no HTML parsing anywhere in the chat, so a message reading
// `<img src=x onerror=...>` is shown as those characters. `h()` refuses inline event-handler
// attributes and `style` (the page runs under `style-src 'self'`).

const SVG = "http://www.w3.org/2000/svg";

/** Build an element: `h("button", {class: "x", dataset: {testid: "send"}, onclick}, "Send")`.
 * Children are nodes or strings (text nodes); null, undefined and false are skipped. */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    else if (name === "text") element.textContent = String(value);
    else if (name === "dataset") for (const [key, v] of Object.entries(value)) {
      if (v !== null && v !== undefined) element.dataset[key] = String(v);
    }
    else if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (name === "style" || name.startsWith("on")) throw new Error(`h(): refusing the ${name} attribute`);
    else if (name === "value") element.value = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }
}

/** An element of the page by id; a missing one is a template bug worth failing loudly on. */
export function $(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element;
}

// -- icons: 24x24 outline paths, drawn with the current text colour ------------------------

const CIRCLE = (cx, cy, r) => `M${cx - r} ${cy}a${r} ${r} 0 1 0 ${2 * r} 0a${r} ${r} 0 1 0 ${-2 * r} 0`;

const ICONS = {
  plus: ["M12 5v14", "M5 12h14"],
  send: ["M22 2 11 13", "M22 2 15 22l-4-9-9-4z"],
  attach: ["M21.4 11.1 12.2 20.2a6 6 0 0 1-8.5-8.5l9.2-9.2a4 4 0 0 1 5.7 5.7l-9.2 9.2a2 2 0 0 1-2.8-2.8l8.5-8.5"],
  copy: ["M11 9h9a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2h-9a2 2 0 0 1-2-2v-9a2 2 0 0 1 2-2z", "M5 15H4a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2h9a2 2 0 0 1 2 2v1"],
  link: ["M10 13a5 5 0 0 0 7.5.5l3-3a5 5 0 0 0-7-7l-1.8 1.7", "M14 11a5 5 0 0 0-7.5-.5l-3 3a5 5 0 0 0 7 7l1.7-1.7"],
  back: ["M15 18 9 12l6-6"],
  users: ["M17 21v-2a4 4 0 0 0-4-4H5a4 4 0 0 0-4 4v2", CIRCLE(9, 7, 4), "M23 21v-2a4 4 0 0 0-3-3.9", "M16 3.1a4 4 0 0 1 0 7.8"],
  close: ["M18 6 6 18", "M6 6l12 12"],
  reply: ["M9 17l-5-5 5-5", "M20 18v-2a4 4 0 0 0-4-4H4"],
  smile: [CIRCLE(12, 12, 10), "M8 14s1.5 2 4 2 4-2 4-2", "M9 9h.01", "M15 9h.01"],
  download: ["M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4", "M7 10l5 5 5-5", "M12 15V3"],
  file: ["M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8z", "M14 2v6h6"],
  lock: ["M5 11h14a2 2 0 0 1 2 2v7a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2z", "M7 11V7a5 5 0 0 1 10 0v4"],
  check: ["M20 6 9 17l-5-5"],
  checks: ["M17 7 7.5 16.5 3 12", "M22 7l-9.5 9.5-1.5-1.5"],
  clock: [CIRCLE(12, 12, 9), "M12 7v5l3 2"],
  alert: [CIRCLE(12, 12, 10), "M12 8v4", "M12 16h.01"],
  chat: ["M21 11.5a8.4 8.4 0 0 1-9 8.4 8.5 8.5 0 0 1-3.8-.9L3 21l1.9-5.7A8.4 8.4 0 0 1 12 3a8.4 8.4 0 0 1 9 8.5z"],
  search: [CIRCLE(11, 11, 7), "M21 21l-4.3-4.3"],
  logout: ["M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4", "M16 17l5-5-5-5", "M21 12H9"],
  down: ["M6 9l6 6 6-6"],
};

/** An inline SVG icon (decorative: hidden from assistive technology). */
export function icon(name, className = "icon") {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", className);
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  for (const d of ICONS[name] ?? ICONS.alert) {
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

/** The composer's keys: Enter sends (Shift+Enter is a new line), Esc cancels a reply; the
 * form's submit (the send button) sends too. */
export function bindComposer(form, input, { send, replying, cancelReply }) {
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !event.altKey) {
      event.preventDefault();
      send();
    } else if (event.key === "Escape" && replying()) {
      event.preventDefault();
      cancelReply();
    }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
}

/** Fill every `<span data-icon="name">` of the page template with its icon. */
export function fillIcons(root = document) {
  for (const slot of root.querySelectorAll("[data-icon]")) {
    slot.replaceChildren(icon(slot.dataset.icon));
  }
}

// -- formatting -------------------------------------------------------------------------------

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

function startOfDay(ms) {
  const d = new Date(ms);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

/** "now", "5 min", "14:03", "Yesterday", "Tue", "3 Mar", "3 Mar 2023". */
export function relativeTime(ms, now = Date.now()) {
  if (!ms) return "";
  const diff = now - ms;
  if (diff < MINUTE) return "now";
  if (diff < HOUR) return `${Math.floor(diff / MINUTE)} min`;
  const today = startOfDay(now);
  if (ms >= today) return clockTime(ms);
  if (ms >= today - DAY) return "Yesterday";
  if (ms >= today - 6 * DAY) return new Date(ms).toLocaleDateString(undefined, { weekday: "short" });
  const sameYear = new Date(ms).getFullYear() === new Date(now).getFullYear();
  return new Date(ms).toLocaleDateString(undefined, { day: "numeric", month: "short", year: sameYear ? undefined : "numeric" });
}

export function clockTime(ms) {
  return new Date(ms).toLocaleTimeString(undefined, { hour: "numeric", minute: "2-digit" });
}

export function fullTime(ms) {
  return new Date(ms).toLocaleString(undefined, { dateStyle: "full", timeStyle: "short" });
}

/** The label of a day separator: "Today", "Yesterday" or the date. */
export function dayLabel(ms, now = Date.now()) {
  const day = startOfDay(ms);
  const today = startOfDay(now);
  if (day === today) return "Today";
  if (day === today - DAY) return "Yesterday";
  const sameYear = new Date(ms).getFullYear() === new Date(now).getFullYear();
  return new Date(ms).toLocaleDateString(undefined, {
    weekday: "long", day: "numeric", month: "long", year: sameYear ? undefined : "numeric",
  });
}

export function dayKey(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

export function formatSize(bytes) {
  if (!Number.isFinite(bytes)) return "";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(bytes < 10 * 1024 ? 1 : 0)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

/** A safety fingerprint as its groups of five digits (it may arrive grouped or not). */
export function fingerprintGroups(fingerprint) {
  const text = String(fingerprint ?? "").trim();
  if (!text) return [];
  const groups = text.split(/[\s-]+/);
  if (groups.length === 1 && text.length > 5) return text.match(/.{1,5}/g);
  return groups;
}

export function shortId(id, length = 8) {
  const text = String(id ?? "");
  return text.length > length + 2 ? `${text.slice(0, length)}…` : text;
}

/** One or two letters for an avatar. */
export function initials(title) {
  const words = String(title ?? "").trim().split(/\s+/).filter((word) => /[\p{L}\p{N}]/u.test(word));
  const letters = words.slice(0, 2).map((word) => Array.from(word)[0] ?? "");
  return (letters.join("") || "?").toUpperCase();
}

/** A stable colour class (hue-0 … hue-7) for a person or a conversation. */
export function hueClass(key) {
  let hash = 0;
  for (const char of String(key ?? "")) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return `hue-${hash % 8}`;
}

export function avatar(title, key, extra = "") {
  return h("span", { class: ["avatar", hueClass(key), extra], "aria-hidden": "true" }, initials(title));
}

// -- base64 and files -----------------------------------------------------------------------

export function bytesToBase64(bytes) {
  if (typeof bytes.toBase64 === "function") return bytes.toBase64();
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

export function base64ToBytes(text) {
  if (typeof Uint8Array.fromBase64 === "function") return Uint8Array.fromBase64(text);
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// Image types shown inline. Anything else is offered as a download only, and downloads are
// typed application/octet-stream, so a blob: URL never renders sender-chosen HTML or SVG.
const PREVIEWABLE = new Set(["image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp"]);

export function isPreviewable(mimeType) {
  return PREVIEWABLE.has(String(mimeType ?? "").toLowerCase());
}

export function imageBlob(base64, mimeType) {
  return new Blob([base64ToBytes(base64)], { type: isPreviewable(mimeType) ? mimeType.toLowerCase() : "application/octet-stream" });
}

/** Save bytes as a file (an `<a download>` on a short-lived blob: URL). */
export function saveFile(base64, filename) {
  const blob = new Blob([base64ToBytes(base64)], { type: "application/octet-stream" });
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: filename || "attachment", class: "visually-hidden" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30_000);
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = h("textarea", { class: "visually-hidden", readonly: true, "aria-hidden": "true" });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    area.remove();
    return ok;
  }
}

// -- toasts ---------------------------------------------------------------------------------

/** Dismissible notices. While a modal dialog is open the rest of the page is inert, so the
 * region moves into the topmost open dialog and back out when it closes. */
export class Toasts {
  constructor(region) {
    this.region = region;
    document.addEventListener("close", () => this._attach(), true);
    document.addEventListener("toggle", () => this._attach(), true); // a dialog opened
  }

  show(message, { kind = "error", timeout = kind === "error" ? 12_000 : 3_000 } = {}) {
    this._attach();
    const toast = h("div", {
      class: ["toast", `toast-${kind}`],
      role: kind === "error" ? "alert" : "status",
      dataset: { testid: "toast", kind },
    });
    const close = () => toast.remove();
    toast.append(
      icon(kind === "error" ? "alert" : "check", "icon toast-icon"),
      h("p", { class: "toast-text", dataset: { testid: "toast-text" } }, message),
      h("button", {
        type: "button", class: "icon-button toast-dismiss", "aria-label": "Dismiss",
        dataset: { testid: "toast-dismiss" }, onclick: close,
      }, icon("close")),
    );
    toast.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.stopPropagation();
        close();
      }
    });
    this.region.append(toast);
    while (this.region.children.length > 4) this.region.firstElementChild.remove();
    if (timeout) setTimeout(close, timeout);
    return toast;
  }

  _attach() {
    const dialogs = [...document.querySelectorAll("dialog[open]")];
    const host = dialogs.at(-1) ?? document.body;
    if (this.region.parentElement !== host) host.append(this.region);
  }
}

const FRIENDLY = {
  unknown_recipient: "No one was found with that inbox id, address or link.",
  permission_denied: "You are not allowed to do that in this conversation.",
  not_a_member: "You are not a member of this conversation.",
  relay_unavailable: "The relay cannot be reached right now. Try again in a moment.",
  worker_crashed: "The encryption worker stopped. Reload the page.",
};

export function errorText(error) {
  const message = error?.message && error.message !== error.code ? error.message : "";
  return message || FRIENDLY[error?.code] || "Something went wrong.";
}
