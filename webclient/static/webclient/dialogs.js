// The dialogs: start a direct chat, create a group, add a member to the open group, confirm a
// delete, pick the chat to forward to, show a message's edit history. Native <dialog>
// elements: modal, focus kept inside, Escape closes them.

import { $, el, formatTime, showToast } from "./dom.js";
import { chatTitle } from "./view.js";

/**
 * Wires the dialogs. `chatCreated(raw)` gets a chat object the user just opened or created;
 * `memberAdded(raw, user)` the open group after `user` was added. Returns the dialogs the app
 * opens itself: `confirm`, `pickChat`, `showEdits`.
 */
export function setupDialogs({ session, state, openChat, chatCreated, memberAdded }) {

  /** A debounced username search that lists users as buttons; `onPick(user)` on activation. */
  function userPicker(input, results, { onPick, exclude = () => new Set() }) {
    let timer = null;
    let generation = 0;
    const run = async () => {
      const query = input.value.trim();
      const mine = ++generation;
      if (!query) {
        results.replaceChildren();
        return;
      }
      try {
        const users = await session.request("GET", `/api/users?search=${encodeURIComponent(query)}`);
        if (mine !== generation) return;
        const skip = exclude();
        const shown = users.filter((user) => !skip.has(user.id));
        for (const user of users) state.usernames.set(user.id, user.username);
        results.replaceChildren(
          ...(shown.length
            ? shown.map((user) =>
                el(
                  "li",
                  {},
                  el("button", { type: "button", className: "user-option", text: user.username, onclick: () => onPick(user) }),
                ),
              )
            : [el("li", { className: "empty", text: "No users found." })]),
        );
      } catch (error) {
        if (mine === generation) results.replaceChildren(el("li", { className: "error", text: error.message }));
      }
    };
    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(run, 200);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        clearTimeout(timer);
        run().then(() => results.querySelector("button")?.focus());
      }
    });
    return {
      reset() {
        input.value = "";
        results.replaceChildren();
      },
      refresh: run,
    };
  }

  function openDialog(dialog, focus) {
    dialog.showModal();
    focus.focus();
  }

  // New direct chat.
  const directPicker = userPicker($("direct-search"), $("direct-results"), {
    onPick: async (user) => {
      try {
        const raw = await session.request("POST", "/api/chats", { kind: "direct", user_id: user.id });
        $("direct-dialog").close();
        chatCreated(raw);
      } catch (error) {
        showToast(error.message);
      }
    },
  });
  $("new-chat-btn").addEventListener("click", () => {
    directPicker.reset();
    openDialog($("direct-dialog"), $("direct-search"));
  });

  // New group.
  const groupMembers = new Map(); // id -> username
  function renderGroupMembers() {
    $("group-members").replaceChildren(
      ...[...groupMembers].map(([id, username]) =>
        el(
          "li",
          { className: "chip" },
          el("span", { text: username }),
          el("button", {
            type: "button",
            className: "chip-remove",
            "aria-label": `Remove ${username}`,
            text: "×",
            onclick: () => {
              groupMembers.delete(id);
              renderGroupMembers();
              groupPicker.refresh();
              $("group-search").focus();
            },
          }),
        ),
      ),
    );
  }
  const groupPicker = userPicker($("group-search"), $("group-results"), {
    exclude: () => new Set(groupMembers.keys()),
    onPick: (user) => {
      groupMembers.set(user.id, user.username);
      renderGroupMembers();
      groupPicker.reset();
      $("group-search").focus();
    },
  });
  $("new-group-btn").addEventListener("click", () => {
    groupMembers.clear();
    renderGroupMembers();
    groupPicker.reset();
    $("group-title").value = "";
    $("group-error").textContent = "";
    openDialog($("group-dialog"), $("group-title"));
  });
  $("group-dialog").querySelector(".cancel").addEventListener("click", () => $("group-dialog").close());
  $("group-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const title = $("group-title").value.trim();
    if (!title) {
      $("group-error").textContent = "Give the group a name.";
      $("group-title").focus();
      return;
    }
    const submit = event.currentTarget.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const raw = await session.request("POST", "/api/chats", { kind: "group", title, member_ids: [...groupMembers.keys()] });
      $("group-dialog").close();
      chatCreated(raw);
    } catch (error) {
      $("group-error").textContent = error.message;
    } finally {
      submit.disabled = false;
    }
  });

  // Add a member to the open group.
  const memberPicker = userPicker($("member-search"), $("member-results"), {
    exclude: () => new Set((openChat()?.members ?? []).map((member) => member.id)),
    onPick: async (user) => {
      const chat = openChat();
      if (!chat) return;
      try {
        const raw = await session.request("POST", `/api/chats/${chat.id}/members`, { user_id: user.id });
        $("member-dialog").close();
        memberAdded(raw, user);
      } catch (error) {
        $("member-error").textContent = error.message;
      }
    },
  });
  $("add-member-btn").addEventListener("click", () => {
    memberPicker.reset();
    $("member-error").textContent = "";
    openDialog($("member-dialog"), $("member-search"));
  });

  /** Resolves true when the user confirms `action`, false on Cancel or Escape. */
  function confirm({ title, text, action }) {
    const dialog = $("confirm-dialog");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-ok").textContent = action;
    dialog.returnValue = "";
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      openDialog(dialog, $("confirm-cancel"));
    });
  }

  /** Resolves with the chat picked from `chats` (filtered as the user types), or null. */
  function pickChat({ title, chats }) {
    const dialog = $("pick-chat-dialog");
    const search = $("pick-chat-search");
    const results = $("pick-chat-results");
    $("pick-chat-title").textContent = title;
    search.value = "";
    let picked = null;
    const show = () => {
      const query = search.value.trim().toLowerCase();
      const shown = chats.filter((chat) => chatTitle(chat).toLowerCase().includes(query));
      results.replaceChildren(
        ...(shown.length
          ? shown.map((chat) =>
              el(
                "li",
                {},
                el("button", {
                  type: "button",
                  className: "user-option",
                  text: chatTitle(chat),
                  onclick: () => {
                    picked = chat;
                    dialog.close();
                  },
                }),
              ),
            )
          : [el("li", { className: "empty", text: "No chats found." })]),
      );
    };
    search.oninput = show;
    show();
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(picked), { once: true });
      openDialog(dialog, search);
    });
  }

  /** The earlier texts of a message (oldest first), then the current one. */
  function showEdits({ edits, current }) {
    const entry = (text, time, label) =>
      el(
        "li",
        {},
        el("p", { className: "edit-text", text }),
        el("time", { datetime: time, text: `${label} ${formatTime(time)}` }),
      );
    $("edits-list").replaceChildren(
      ...edits.map((edit, index) => entry(edit.text, index ? edits[index - 1].edited_at : current.created_at, index ? "Edited" : "Sent")),
      entry(current.text, current.edited_at, "Now, edited"),
    );
    openDialog($("edits-dialog"), $("edits-close"));
  }

  return { confirm, pickChat, showEdits };
}
