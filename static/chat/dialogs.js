// The two dialogs: "New chat" (a DM or a group) and the member panel (members, safety
// fingerprints, add/remove, rename, leave). Both are native modal <dialog>s: Esc closes them,
// focus stays inside while open and returns to the opener afterwards.

import { $, avatar, errorText, fingerprintGroups, h, icon, shortId } from "./ui.js";

/** Inbox ids, 0x addresses or invite links separated by commas, semicolons or white space. */
export function parseRecipients(text) {
  return String(text ?? "").split(/[\s,;]+/).map((part) => part.trim()).filter(Boolean);
}

/** Run `action` with `button` disabled (and marked busy) until it settles. */
export async function withBusy(button, action) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await action();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

function wireDialog(dialog) {
  for (const button of dialog.querySelectorAll("[data-close]")) {
    button.addEventListener("click", () => dialog.close());
  }
  // A click on the backdrop (the dialog box itself is the target only outside its content).
  dialog.addEventListener("click", (event) => {
    if (event.target !== dialog) return;
    const box = dialog.getBoundingClientRect();
    const inside = event.clientX >= box.left && event.clientX <= box.right && event.clientY >= box.top && event.clientY <= box.bottom;
    if (!inside) dialog.close();
  });
}

export class NewChatDialog {
  constructor({ call, toasts, onCreated }) {
    Object.assign(this, { call, toasts, onCreated });
    this.dialog = $("new-chat-dialog");
    this.tabs = { dm: $("tab-dm"), group: $("tab-group") };
    this.forms = { dm: $("dm-form"), group: $("group-form") };
    this.offer = $("dm-offer");
    wireDialog(this.dialog);
    for (const [mode, tab] of Object.entries(this.tabs)) {
      tab.addEventListener("click", () => this._select(mode, { focus: true }));
      tab.addEventListener("keydown", (event) => {
        if (event.key !== "ArrowRight" && event.key !== "ArrowLeft") return;
        event.preventDefault();
        const other = mode === "dm" ? "group" : "dm";
        this._select(other);
        this.tabs[other].focus();
      });
    }
    this.forms.dm.addEventListener("submit", (event) => this._startDm(event));
    this.forms.group.addEventListener("submit", (event) => this._createGroup(event));
  }

  /** Open on `mode` ("dm" | "group"); `recipient` prefills the DM field, `offer` explains why. */
  open({ mode = "dm", recipient = "", offer = "" } = {}) {
    this.forms.dm.reset();
    this.forms.group.reset();
    $("dm-recipient").value = recipient;
    this.offer.textContent = offer;
    this.offer.hidden = !offer;
    this._select(mode);
    if (!this.dialog.open) this.dialog.showModal();
    this._focusFirst(mode);
  }

  _select(mode, { focus = false } = {}) {
    for (const [name, tab] of Object.entries(this.tabs)) {
      const selected = name === mode;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
      this.forms[name].hidden = !selected;
    }
    if (focus) this._focusFirst(mode);
  }

  _focusFirst(mode) {
    const field = mode === "dm" ? $("dm-recipient") : $("group-name");
    field.focus();
    if (mode === "dm" && field.value) field.select();
  }

  async _startDm(event) {
    event.preventDefault();
    const input = $("dm-recipient");
    const recipient = input.value.trim();
    if (!recipient) {
      input.focus();
      this.toasts.show("Enter an inbox id, a 0x address or an invite link.");
      return;
    }
    await withBusy($("dm-start"), async () => {
      try {
        const { conversation } = await this.call("newDm", { recipient });
        this.dialog.close();
        this.onCreated(conversation);
      } catch (error) {
        this.toasts.show(errorText(error));
        input.focus();
      }
    });
  }

  async _createGroup(event) {
    event.preventDefault();
    const nameInput = $("group-name");
    const name = nameInput.value.trim();
    if (!name) {
      nameInput.focus();
      this.toasts.show("Give the group a name.");
      return;
    }
    const members = parseRecipients($("group-members").value);
    await withBusy($("group-create"), async () => {
      try {
        const { conversation } = await this.call("newGroup", { name, members });
        this.dialog.close();
        this.onCreated(conversation);
      } catch (error) {
        this.toasts.show(errorText(error));
      }
    });
  }
}

const ROLES = { admin: "Admin", super_admin: "Super admin" };

export class MemberPanel {
  constructor({ call, toasts, getConversation }) {
    Object.assign(this, { call, toasts, getConversation });
    this.dialog = $("member-panel");
    this.conversationId = null;
    wireDialog(this.dialog);
    this.dialog.addEventListener("close", () => {
      this.conversationId = null;
    });
    $("rename-form").addEventListener("submit", (event) => this._rename(event));
    $("add-members-form").addEventListener("submit", (event) => this._add(event));
    $("leave").addEventListener("click", () => this._confirmLeave(true));
    $("leave-cancel").addEventListener("click", () => this._confirmLeave(false));
    $("leave-confirm").addEventListener("click", () => this._leave());
  }

  open(conversationId) {
    this.conversationId = conversationId;
    this._confirmLeave(false, { focus: false });
    const conversation = this.getConversation(conversationId);
    $("rename-input").value = conversation?.name || conversation?.title || "";
    $("add-members-input").value = "";
    this.render();
    if (!this.dialog.open) this.dialog.showModal();
    this.dialog.querySelector("[data-close]").focus();
  }

  /** Redraw if `conversationId` is the one shown (a `conversation` event changed it). */
  update(conversationId) {
    if (this.dialog.open && conversationId === this.conversationId) this.render();
  }

  render() {
    const conversation = this.getConversation(this.conversationId);
    if (!conversation) return;
    const group = conversation.kind === "group";
    const active = conversation.active !== false;
    $("member-heading").textContent = group ? "Group details" : "Chat details";
    $("rename-form").hidden = !group || !active;
    $("add-members-form").hidden = !group || !active;
    $("leave-section").hidden = !group || !active;
    const members = [...(conversation.members ?? [])].sort(byRole);
    $("members-heading").textContent = `Members (${members.length})`;
    $("member-list").replaceChildren(...members.map((member) => this._member(member, group && active)));
  }

  _member(member, removable) {
    const name = member.name || shortId(member.inboxId, 12);
    const groups = fingerprintGroups(member.fingerprint);
    return h("li", { class: "member", dataset: { testid: "member", inboxId: member.inboxId, role: member.role } },
      avatar(name, member.inboxId),
      h("div", { class: "member-main" },
        h("div", { class: "member-top" },
          h("span", { class: "member-name", dataset: { testid: "member-name" } }, name),
          member.isMe ? h("span", { class: "you" }, "you") : null,
          ROLES[member.role] ? h("span", { class: "role", dataset: { testid: "member-role" } }, ROLES[member.role]) : null),
        h("code", { class: "member-id", title: member.inboxId }, member.inboxId),
        groups.length
          ? h("div", { class: "fingerprint", dataset: { testid: "fingerprint" }, role: "group", "aria-label": `Safety number of ${name}` },
            groups.map((digits) => h("span", { class: "fingerprint-group" }, digits)))
          : h("p", { class: "hint" }, "No verified identity yet.")),
      removable && !member.isMe
        ? h("button", {
          type: "button", class: "icon-button small danger", "aria-label": `Remove ${name} from the group`,
          title: "Remove from the group", dataset: { testid: "remove-member" },
          onclick: (event) => this._remove(member, name, event.currentTarget),
        }, icon("close"))
        : null);
  }

  async _run(button, cmd, args, done) {
    await withBusy(button, async () => {
      try {
        await this.call(cmd, { conversationId: this.conversationId, ...args });
        done?.();
      } catch (error) {
        this.toasts.show(errorText(error));
      }
    });
  }

  async _rename(event) {
    event.preventDefault();
    const name = $("rename-input").value.trim();
    if (!name) return;
    await this._run($("rename-save"), "rename", { name }, () => this.toasts.show("Group renamed", { kind: "info" }));
  }

  async _add(event) {
    event.preventDefault();
    const input = $("add-members-input");
    const members = parseRecipients(input.value);
    if (!members.length) {
      input.focus();
      return;
    }
    await this._run($("add-members-button"), "addMembers", { members }, () => {
      input.value = "";
      this.toasts.show(members.length === 1 ? "Member added" : `${members.length} members added`, { kind: "info" });
    });
  }

  async _remove(member, name, button) {
    await this._run(button, "removeMembers", { members: [member.inboxId] },
      () => this.toasts.show(`${name} was removed`, { kind: "info" }));
  }

  _confirmLeave(show, { focus = true } = {}) {
    $("leave").hidden = show;
    $("leave-confirm-row").hidden = !show;
    if (focus) (show ? $("leave-cancel") : $("leave")).focus();
  }

  async _leave() {
    const conversation = this.getConversation(this.conversationId);
    await this._run($("leave-confirm"), "leave", {}, () => {
      this.dialog.close();
      this.toasts.show(`You left ${conversation?.title ?? "the group"}`, { kind: "info" });
    });
  }
}

function byRole(a, b) {
  const rank = (member) => (member.isMe ? 0 : member.role === "super_admin" ? 1 : member.role === "admin" ? 2 : 3);
  return rank(a) - rank(b) || String(a.name ?? "").localeCompare(String(b.name ?? ""));
}
