/*
 * Veilpost agent widget: a private, end-to-end-encrypted chat with one agent, for any site.
 *
 *   <script src="https://RELAY/static/widget/veilpost-widget.js"
 *           data-agent="INBOX_ID_OR_0xADDRESS" async></script>
 *
 * Optional attributes: data-title (the panel's title; default: the agent's name),
 * data-greeting (a first line shown in the panel, not sent), data-color (any CSS colour),
 * data-position ("right", the default, or "left"), data-label (the button's label),
 * data-open ("true": open at once).
 *
 * This script only draws a button. The chat is an iframe of the relay's /widget page, made
 * when the button is first pressed: its keys, its messages and its scripts live on the relay's
 * origin, out of this page's reach. Nothing else is loaded before then.
 */
(() => {
  "use strict";
  const script = document.currentScript;
  if (!script || window.__veilpostWidget) return;
  window.__veilpostWidget = true;
  const data = script.dataset;
  const relay = new URL(data.relay || script.src, location.href).origin;
  if (!data.agent) {
    console.error("veilpost widget: the script tag needs data-agent (an inbox id or a 0x address)");
    return;
  }
  const left = data.position === "left";
  const color = data.color && CSS.supports("color", data.color) ? data.color : "#4f46e5";
  const label = data.label || "Chat with us";

  const host = document.createElement("div");
  host.setAttribute("data-veilpost-widget", "");
  // The shadow root keeps the page's styles off the button (and the button's off the page); it
  // is no security boundary: the iframe is.
  const root = host.attachShadow({ mode: "open" });
  const side = left ? "left" : "right";
  const style = document.createElement("style");
  style.textContent = `
    :host { all: initial; }
    .launcher, .panel { position: fixed; z-index: 2147483000; ${side}: 20px; }
    .launcher {
      bottom: 20px; width: 58px; height: 58px; border: 0; border-radius: 50%; padding: 0;
      display: grid; place-items: center; cursor: pointer; color: #fff; background: ${color};
      box-shadow: 0 6px 20px rgb(16 24 40 / 28%); transition: transform .15s ease;
    }
    .launcher:hover { transform: scale(1.05); }
    .launcher:focus-visible { outline: 3px solid ${color}; outline-offset: 3px; }
    .launcher svg { width: 26px; height: 26px; }
    .badge {
      position: absolute; top: -2px; ${left ? "left" : "right"}: -2px; min-width: 20px; height: 20px;
      padding: 0 6px; box-sizing: border-box; border-radius: 10px; background: #e5372b; color: #fff;
      font: 700 12px/20px system-ui, sans-serif; text-align: center;
    }
    .badge[hidden], .panel[hidden], .fallback[hidden] { display: none; }
    .fallback {
      position: absolute; inset: 0; display: grid; place-content: center; gap: 8px; padding: 24px;
      background: #fff; color: #151922; font: 15px/1.5 system-ui, sans-serif; text-align: center;
    }
    .fallback strong { font-size: 17px; }
    .panel {
      bottom: 92px; width: 380px; height: min(620px, calc(100vh - 112px)); border-radius: 18px;
      overflow: hidden; background: #fff; box-shadow: 0 16px 48px rgb(16 24 40 / 28%);
      animation: rise .16s ease-out;
    }
    @keyframes rise { from { opacity: 0; transform: translateY(8px); } }
    iframe { width: 100%; height: 100%; border: 0; display: block; }
    @media (max-width: 480px) {
      .panel { inset: 0; width: auto; height: auto; border-radius: 0; }
      .panel:not([hidden]) + .launcher { display: none; }
    }
    @media (prefers-reduced-motion: reduce) { .panel { animation: none; } .launcher { transition: none; } }
  `;
  const svg = (paths) =>
    `<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">${paths}</svg>`;
  const CHAT = svg('<path d="M21 11.5a8.4 8.4 0 0 1-9 8.4 8.5 8.5 0 0 1-3.8-.9L3 21l1.9-5.7A8.4 8.4 0 0 1 12 3a8.4 8.4 0 0 1 9 8.5z"/>');
  const CLOSE = svg('<path d="M18 6 6 18M6 6l12 12"/>');

  const panel = document.createElement("div");
  panel.className = "panel";
  panel.hidden = true;
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", data.title || label);
  const button = document.createElement("button");
  button.type = "button";
  button.className = "launcher";
  button.setAttribute("aria-label", label);
  button.setAttribute("aria-expanded", "false");
  button.title = label;
  button.innerHTML = CHAT; // a constant: no page or remote text ever goes through innerHTML
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.hidden = true;
  badge.setAttribute("aria-hidden", "true");
  button.append(badge);
  // A constructed style sheet is not an inline style: host pages with a strict CSP
  // (style-src without 'unsafe-inline') still draw the button.
  if ("adoptedStyleSheets" in root && typeof CSSStyleSheet.prototype.replaceSync === "function") {
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(style.textContent);
    root.adoptedStyleSheets = [sheet];
    root.append(panel, button);
  } else {
    root.append(style, panel, button);
  }

  // Shown when the chat's page does not load (the relay is down): an iframe cannot say why.
  const fallback = document.createElement("div");
  fallback.className = "fallback";
  fallback.hidden = true;
  fallback.setAttribute("role", "alert");
  const fallbackTitle = document.createElement("strong");
  fallbackTitle.textContent = "The chat cannot be reached";
  const fallbackText = document.createElement("span");
  fallbackText.textContent = "The chat service did not answer. Check your connection and try again later.";
  fallback.append(fallbackTitle, fallbackText);
  panel.append(fallback);

  let frame = null;
  let loaded = false;
  function open() {
    if (!frame) {
      setTimeout(() => { fallback.hidden = loaded; }, 12000);
      const settings = new URLSearchParams({ agent: data.agent });
      for (const name of ["title", "greeting", "color"]) if (data[name]) settings.set(name, data[name]);
      frame = document.createElement("iframe");
      frame.title = data.title || label;
      frame.src = `${relay}/widget#${settings}`;
      frame.allow = "clipboard-write";
      frame.referrerPolicy = "no-referrer";
      // The chat may run scripts on its own origin and download files; it may not navigate
      // or script this page.
      frame.setAttribute("sandbox", "allow-scripts allow-same-origin allow-forms allow-downloads allow-popups allow-popups-to-escape-sandbox");
      panel.append(frame);
    }
    panel.hidden = false;
    button.innerHTML = CLOSE;
    button.append(badge);
    button.setAttribute("aria-expanded", "true");
    badge.hidden = true;
    if (loaded) frame.contentWindow.postMessage({ type: "veilpost:open" }, relay);
    frame.focus();
  }
  function close() {
    panel.hidden = true;
    button.innerHTML = CHAT;
    button.append(badge);
    button.setAttribute("aria-expanded", "false");
    if (loaded) frame.contentWindow.postMessage({ type: "veilpost:closed" }, relay);
    button.focus();
  }
  button.addEventListener("click", () => (panel.hidden ? open() : close()));
  window.addEventListener("message", (event) => {
    if (!frame || event.origin !== relay || event.source !== frame.contentWindow) return;
    const type = event.data?.type;
    if (type === "veilpost:loaded") {
      loaded = true;
      fallback.hidden = true;
      if (!panel.hidden) frame.contentWindow.postMessage({ type: "veilpost:open" }, relay);
    } else if (type === "veilpost:close") close();
    else if (type === "veilpost:ready" && !panel.hidden) frame.contentWindow.postMessage({ type: "veilpost:open" }, relay);
    else if (type === "veilpost:unread") {
      const count = Number(event.data.count) || 0;
      badge.textContent = count > 9 ? "9+" : String(count);
      badge.hidden = count === 0 || !panel.hidden;
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !panel.hidden) close();
  });
  const attach = () => {
    document.body.append(host);
    if (data.open === "true") open();
  };
  if (document.body) attach();
  else document.addEventListener("DOMContentLoaded", attach);
})();
