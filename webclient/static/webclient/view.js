// Rendering of the chat list and the open conversation. Elements are created once per item and
// updated in place (keyed by chat id, or by seq / client_id for messages), so focus, scroll
// position and screen readers are not disturbed by re-renders.

import { $, bdi, bidiSafe, el, formatTime } from "./dom.js";
import { compareChats } from "./store.js";

let state = null;
let actions = { open: () => {}, retry: () => {} };

/** `appState` is the app's state object; `handlers.open(chatId)` and `handlers.retry(pending)` are user actions. */
export function initView(appState, handlers) {
  state = appState;
  actions = handlers;
}

export function openChat() {
  return state.openChatId === null ? null : (state.chats.get(state.openChatId) ?? null);
}

export function usernameOf(userId) {
  if (userId === state.me?.id) return state.me.username;
  return state.usernames.get(userId) ?? `user #${userId}`;
}

export function chatTitle(chat) {
  if (chat.kind === "group") return chat.title || "Group";
  const other = chat.members?.find((member) => member.id !== state.me.id);
  return other ? other.username : "Direct chat";
}

/** Forgets every rendered element (logout). */
export function resetView() {
  $("chat-list").replaceChildren();
  $("message-list").replaceChildren();
  renderedChats.clear();
  renderedMessages.clear();
  renderedFor = null;
}

/** The list button of a chat, if rendered (to give focus back to it). */
export function chatButton(chatId) {
  return renderedChats.get(chatId)?.firstChild ?? null;
}

// --- chat list ------------------------------------------------------------------------------------

const renderedChats = new Map(); // chat id -> li

export function renderChatList() {
  const list = $("chat-list");
  const chats = [...state.chats.values()].sort(compareChats);
  $("chat-list-empty").hidden = chats.length > 0;
  reconcile(list, renderedChats, chats, (chat) => chat.id, buildChatItem, updateChatItem);
}

/**
 * Makes `list`'s children the elements of `items`, in order, reusing the element already
 * rendered for each key (`rendered`: key -> element), building missing ones and removing
 * those whose key is gone. Unchanged elements are not moved, so scroll and focus survive.
 */
function reconcile(list, rendered, items, keyOf, build, update) {
  let previous = null;
  const keep = new Set();
  for (const value of items) {
    const key = keyOf(value);
    keep.add(key);
    let item = rendered.get(key);
    if (!item) {
      item = build(value);
      rendered.set(key, item);
    }
    update(item, value);
    const wanted = previous ? previous.nextSibling : list.firstChild;
    if (wanted !== item) list.insertBefore(item, wanted);
    previous = item;
  }
  for (const [key, item] of rendered) {
    if (!keep.has(key)) {
      item.remove();
      rendered.delete(key);
    }
  }
}

function buildChatItem(chat) {
  const button = el(
    "button",
    { type: "button", className: "chat-item", dataset: { chatId: chat.id }, onclick: () => actions.open(chat.id) },
    el("span", { className: "chat-item-title" }),
    el("span", { className: "chat-item-time" }),
    el("span", { className: "chat-item-preview" }),
    el("span", { className: "badge" }),
  );
  return el("li", { dataset: { chatId: chat.id } }, button);
}

function updateChatItem(item, chat) {
  const button = item.firstChild;
  const [title, time, preview, badge] = button.children;
  const name = bidiSafe(chatTitle(chat));
  title.textContent = name;
  time.textContent = formatTime(chat.activityAt);
  const typers = chat.typingUsers();
  // The preview as element parts (user strings in <bdi>) and as plain text (for aria-label).
  let parts;
  if (typers.length) parts = ["typing…"];
  else if (chat.last_message) {
    const message = chat.last_message;
    const who =
      message.kind === "system"
        ? []
        : message.sender_id === state.me.id
          ? ["You: "]
          : chat.kind === "group"
            ? [bdi(usernameOf(message.sender_id)), ": "]
            : [];
    parts = [...who, bdi(message.text)];
  } else parts = ["No messages yet"];
  preview.replaceChildren(...parts);
  const previewText = preview.textContent;
  preview.classList.toggle("is-typing", typers.length > 0);
  const unread = chat.unreadCount;
  badge.textContent = unread > 0 ? (unread > 999 ? "999+" : String(unread)) : "";
  badge.hidden = unread === 0;
  button.setAttribute(
    "aria-label",
    `${name}${unread ? `, ${unread} unread` : ""}${previewText ? `, ${previewText}` : ""}`,
  );
  if (chat.id === state.openChatId) button.setAttribute("aria-current", "true");
  else button.removeAttribute("aria-current");
  item.classList.toggle("unread", unread > 0);
}

// --- open chat ----------------------------------------------------------------------------------

export function renderChatPane() {
  const chat = openChat();
  $("no-chat").hidden = Boolean(chat);
  $("chat-view").hidden = !chat;
  if (!chat) {
    $("message-list").replaceChildren();
    renderedMessages.clear();
    renderedFor = null;
    return;
  }
  renderChatHeader();
  renderMessages();
}

export function renderChatHeader() {
  const chat = openChat();
  if (!chat) return;
  $("chat-title").textContent = bidiSafe(chatTitle(chat));
  let subtitle;
  if (chat.kind === "group") {
    subtitle = chat.members
      ? chat.members.flatMap((member, index) => [
          ...(index ? [", "] : []),
          member.id === state.me.id ? "you" : bdi(member.username),
        ])
      : [`${chat.members_count} members`];
  } else subtitle = ["Direct chat"];
  $("chat-subtitle").replaceChildren(...subtitle);
  const role = chat.roleOf(state.me.id);
  $("add-member-btn").hidden = !(chat.kind === "group" && (role === "owner" || role === "admin"));
  renderTyping();
}

export function renderTyping() {
  const chat = openChat();
  if (!chat) return;
  const names = chat.typingUsers().map(usernameOf);
  let parts = [];
  if (names.length === 1) parts = [bdi(names[0]), " is typing…"];
  else if (names.length === 2) parts = [bdi(names[0]), " and ", bdi(names[1]), " are typing…"];
  else if (names.length > 2) parts = ["Several people are typing…"];
  const text = parts.map((part) => (typeof part === "string" ? part : part.textContent)).join("");
  const typing = $("typing");
  if (typing.textContent !== text) typing.replaceChildren(...parts);
  typing.hidden = !text;
  $("chat-subtitle").hidden = Boolean(text);
}

const renderedMessages = new Map(); // "s<seq>" or "c<client_id>" -> li
let renderedFor = null; // chat id the rendered messages belong to

function messageKey(message) {
  return message.seq !== undefined ? `s${message.seq}` : `c${message.client_id}`;
}

/**
 * Brings the message list in line with the open chat's state. It follows new messages when the
 * reader is at the bottom; `stick` (an own message) or `toBottom` (a chat just opened) always
 * scroll to the newest. Prepending older pages keeps what the reader was looking at in place.
 */
export function renderMessages({ stick = false, toBottom = false } = {}) {
  const chat = openChat();
  if (!chat) return;
  const scroller = $("messages");
  const list = $("message-list");
  if (renderedFor !== chat.id) {
    list.replaceChildren();
    renderedMessages.clear();
    renderedFor = chat.id;
    toBottom = true;
  }
  const nearBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  const firstBefore = list.firstElementChild;
  const anchorTop = firstBefore ? firstBefore.getBoundingClientRect().top : 0;

  const items = chat.loaded ? [...chat.sortedMessages(), ...chat.pending.values()] : [];
  reconcile(
    list,
    renderedMessages,
    items,
    messageKey,
    (message) => buildMessage(chat, message),
    (item, message) => updateMessage(chat, item, message),
  );

  const status = $("history-status");
  if (!chat.loaded) status.textContent = "Loading…";
  else if (state.loadingOlder) status.textContent = "Loading older messages…";
  else if (chat.hasOlder) status.textContent = "";
  else status.textContent = chat.messages.size ? "Beginning of the conversation" : "No messages yet. Say hello!";

  if (toBottom || stick || nearBottom) {
    scroller.scrollTop = scroller.scrollHeight;
  } else if (firstBefore && firstBefore.isConnected) {
    // Older messages were prepended: keep the previous first message where it was.
    scroller.scrollTop += firstBefore.getBoundingClientRect().top - anchorTop;
  }
}

function buildMessage(chat, message) {
  if (message.kind === "system") {
    return el(
      "li",
      { className: "msg system", dataset: { seq: message.seq } },
      el("span", { className: "system-text", text: message.text }),
    );
  }
  const mine = message.sender_id === state.me.id || message.seq === undefined;
  const item = el(
    "li",
    { className: `msg ${mine ? "mine" : "theirs"}` },
    !mine && chat.kind === "group" ? el("span", { className: "sender", text: usernameOf(message.sender_id) }) : null,
    el("p", { className: "text", text: message.text }),
    el("span", { className: "meta" }, el("time", { datetime: message.created_at, text: formatTime(message.created_at) })),
  );
  if (mine) item.querySelector(".meta").append(el("span", { className: "tick" }));
  return item;
}

function updateMessage(chat, item, message) {
  if (message.seq !== undefined) item.dataset.seq = message.seq;
  else item.dataset.clientId = message.client_id;
  const tick = item.querySelector(".tick");
  if (!tick) return;
  let mark;
  let label;
  let status;
  if (message.seq === undefined) {
    if (message.failed) {
      mark = "!";
      label = `Not sent: ${message.failed}`;
      status = "failed";
    } else {
      mark = "◷";
      label = "Sending";
      status = "pending";
    }
  } else if (chat.isReadByOthers(message)) {
    mark = "✓✓";
    label = "Read";
    status = "read";
  } else {
    mark = "✓";
    label = "Sent";
    status = "sent";
  }
  if (tick.dataset.status !== status) {
    tick.textContent = mark;
    tick.dataset.status = status;
    tick.setAttribute("aria-label", label);
    tick.title = label;
    item.dataset.status = status;
    item.querySelector(".retry")?.remove();
    if (status === "failed") {
      item.append(el("button", { type: "button", className: "retry link", text: "Retry", onclick: () => actions.retry(message) }));
    }
  }
}
