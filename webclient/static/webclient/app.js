// The browser client: wires the session (api.js), the live socket (socket.js) and the chat
// state (store.js) to the page. No framework: elements are created once per item and updated
// in place (keyed by chat id or by seq / client_id), so focus, scroll position and screen
// readers are not disturbed by re-renders.

import { ApiError, Session } from "./api.js";
import { LiveSocket } from "./socket.js";
import { Chat, compareChats, newClientId } from "./store.js";

const TYPING_SEND_EVERY_MS = 3_000;
const TYPING_SHOW_MS = 4_000;
const PAGE_SIZE = 50;
const CATCH_UP_PAGE = 200;
const PHONE_QUERY = window.matchMedia("(max-width: 720px)");

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "className") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
};

const session = new Session();
const socket = new LiveSocket(session);

const state = {
  me: null,
  chats: new Map(), // id -> Chat
  usernames: new Map(), // user id -> username
  openChatId: null,
  outbox: new Map(), // client_id -> pending message still to be acknowledged
  syncing: false,
  buffered: [],
  lastTypingSent: new Map(), // chat id -> ms
  catchUps: new Map(), // chat id -> running promise
  loadingOlder: false,
};

// --- small helpers -----------------------------------------------------------------------------

function usernameOf(userId) {
  if (userId === state.me?.id) return state.me.username;
  return state.usernames.get(userId) ?? `user #${userId}`;
}

function rememberMembers(chat) {
  for (const member of chat.members ?? []) state.usernames.set(member.id, member.username);
}

function chatTitle(chat) {
  if (chat.kind === "group") return chat.title || "Group";
  const other = chat.members?.find((member) => member.id !== state.me.id);
  return other ? other.username : "Direct chat";
}

function formatTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const now = new Date();
  const sameDay = date.toDateString() === now.toDateString();
  return sameDay
    ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : date.toLocaleDateString([], { day: "numeric", month: "short" });
}

let toastTimer = null;
function showToast(text) {
  const toast = $("toast");
  toast.textContent = text;
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (toast.hidden = true), 6_000);
}

function announce(text) {
  // Re-set so that the same text twice is still announced.
  const region = $("announcer");
  region.textContent = "";
  requestAnimationFrame(() => (region.textContent = text));
}

function openChat() {
  return state.openChatId === null ? null : state.chats.get(state.openChatId) ?? null;
}

function pageVisible() {
  return document.visibilityState === "visible";
}

// --- auth screens ------------------------------------------------------------------------------

function showAuth(message = "") {
  $("app-view").hidden = true;
  $("auth-view").hidden = false;
  $("auth-error").textContent = message;
  $("login-form").hidden = false;
  $("register-form").hidden = true;
  $("login-username").focus();
}

async function handleAuthSubmit(event, action) {
  event.preventDefault();
  const form = event.currentTarget;
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  $("auth-error").textContent = "";
  try {
    await action(new FormData(form));
    form.reset();
    startApp();
  } catch (error) {
    $("auth-error").textContent = error instanceof ApiError ? error.message : String(error);
  } finally {
    button.disabled = false;
  }
}

$("login-form").addEventListener("submit", (event) =>
  handleAuthSubmit(event, (data) => session.login(data.get("username").trim(), data.get("password"))),
);
$("register-form").addEventListener("submit", (event) =>
  handleAuthSubmit(event, (data) =>
    session.register(data.get("username").trim(), data.get("email").trim(), data.get("password")),
  ),
);
$("show-register").addEventListener("click", () => {
  $("login-form").hidden = true;
  $("register-form").hidden = false;
  $("auth-error").textContent = "";
  $("register-username").focus();
});
$("show-login").addEventListener("click", () => {
  $("register-form").hidden = true;
  $("login-form").hidden = false;
  $("auth-error").textContent = "";
  $("login-username").focus();
});

$("logout-btn").addEventListener("click", async () => {
  socket.stop();
  await session.logout();
});

session.addEventListener("ended", (event) => {
  socket.stop();
  resetState();
  showAuth(event.detail.reason === "expired" ? "Your session has ended. Please log in again." : "");
});

function resetState() {
  state.me = null;
  state.chats.clear();
  state.usernames.clear();
  state.openChatId = null;
  state.outbox.clear();
  state.buffered = [];
  state.syncing = false;
  $("chat-list").replaceChildren();
  $("message-list").replaceChildren();
  renderedMessages.clear();
  renderedChats.clear();
  setConnectionStatus("stopped");
}

function startApp() {
  state.me = session.user;
  $("me-name").textContent = state.me.username;
  $("auth-view").hidden = true;
  $("app-view").hidden = false;
  renderChatPane();
  refreshChats()
    .then(() => routeFromHash())
    .catch((error) => showToast(`Could not load chats: ${error.message}`));
  socket.start();
}

// --- connection status -----------------------------------------------------------------------------

function setConnectionStatus(status) {
  const banner = $("conn-status");
  const text = { connecting: "Connecting…", reconnecting: "Reconnecting…" }[status];
  banner.hidden = !text;
  banner.textContent = text ?? "";
  banner.dataset.status = status;
  document.body.dataset.connection = status;
}

socket.addEventListener("status", (event) => setConnectionStatus(event.detail.status));

// --- sync: what the client does on every (re)connect (PROTOCOL.md §9) ---------------------------

socket.addEventListener("ready", async () => {
  state.syncing = true;
  for (const chat of state.chats.values()) chat.readRequested = 0;
  try {
    await refreshChats();
    await Promise.all([...state.chats.values()].filter((chat) => chat.loaded).map((chat) => catchUp(chat)));
  } catch (error) {
    if (error instanceof ApiError && error.status !== 0) showToast(`Sync failed: ${error.message}`);
  } finally {
    state.syncing = false;
    const buffered = state.buffered;
    state.buffered = [];
    for (const frame of buffered) handleFrame(frame);
    for (const pending of state.outbox.values()) transmit(pending);
    renderChatList();
    renderChatPane();
    maybeMarkRead();
  }
});

socket.addEventListener("frame", (event) => {
  if (state.syncing) state.buffered.push(event.detail);
  else handleFrame(event.detail);
});

async function refreshChats() {
  const list = await session.request("GET", "/api/chats");
  const seen = new Set();
  for (const raw of list) {
    seen.add(raw.id);
    upsertChat(raw);
  }
  for (const id of [...state.chats.keys()]) if (!seen.has(id)) dropChat(id);
  renderChatList();
  renderChatPane();
}

function upsertChat(raw) {
  let chat = state.chats.get(raw.id);
  if (chat) chat.update(raw);
  else {
    chat = new Chat(raw, state.me.id);
    state.chats.set(chat.id, chat);
  }
  rememberMembers(chat);
  return chat;
}

function dropChat(id) {
  const chat = state.chats.get(id);
  if (!chat) return;
  for (const clientId of chat.pending.keys()) state.outbox.delete(clientId);
  state.chats.delete(id);
  if (state.openChatId === id) {
    state.openChatId = null;
    if (location.hash) history.replaceState(null, "", location.pathname);
    showPane("list");
  }
}

async function fetchChat(chatId) {
  try {
    const raw = await session.request("GET", `/api/chats/${chatId}`);
    const chat = upsertChat(raw);
    if (chat.missingNewer) catchUp(chat);
  } catch (error) {
    if (error.status === 404) dropChat(chatId);
  }
  renderChatList();
  renderChatPane();
}

/** Fetches everything past the gap-free window (after_seq=high), page by page. One at a time per chat. */
function catchUp(chat) {
  const running = state.catchUps.get(chat.id);
  if (running) {
    running.control.again = true;
    return running.job.catch(() => {});
  }
  const control = { again: false };
  const job = (async () => {
    do {
      control.again = false;
      let hasMore = true;
      while (hasMore && state.chats.get(chat.id) === chat) {
        const page = await session.request(
          "GET",
          `/api/chats/${chat.id}/messages?after_seq=${chat.high}&limit=${CATCH_UP_PAGE}`,
        );
        const before = chat.high;
        chat.merge(page.results);
        hasMore = page.has_more && chat.high > before;
      }
    } while (control.again);
  })();
  state.catchUps.set(chat.id, { job, control });
  job
    .catch((error) => {
      if (error.status === 404) dropChat(chat.id);
    })
    .finally(() => {
      state.catchUps.delete(chat.id);
      renderChatList();
      if (state.openChatId === chat.id) renderMessages();
      maybeMarkRead();
    });
  return job.catch(() => {});
}

// --- server frames -----------------------------------------------------------------------------

function handleFrame(frame) {
  switch (frame.type) {
    case "message.new":
      return onMessage(frame.message, { live: true });
    case "message.ack":
      state.outbox.delete(frame.client_id);
      return onMessage(frame.message, { live: false });
    case "chat.read": {
      const chat = state.chats.get(frame.chat_id);
      if (!chat || frame.user_id !== state.me.id) return;
      chat.last_read_seq = Math.max(chat.last_read_seq, frame.last_read_seq);
      if (frame.read_all_seq !== undefined) chat.read_all_seq = Math.max(chat.read_all_seq, frame.read_all_seq);
      renderChatList();
      if (chat.id === state.openChatId) renderMessages();
      return;
    }
    case "chat.read_all": {
      const chat = state.chats.get(frame.chat_id);
      if (!chat) return;
      chat.read_all_seq = Math.max(chat.read_all_seq, frame.up_to_seq);
      if (chat.id === state.openChatId) renderMessages();
      return;
    }
    case "typing":
      return onTyping(frame);
    case "chat.created": {
      upsertChat(frame.chat);
      renderChatList();
      return;
    }
    case "chat.updated": {
      const chat = state.chats.get(frame.chat_id);
      if (!chat) return;
      chat.title = frame.title;
      renderChatList();
      if (chat.id === state.openChatId) renderChatHeader();
      return;
    }
    case "chat.member_added":
      return void fetchChat(frame.chat_id);
    case "chat.member_updated": {
      const member = state.chats.get(frame.chat_id)?.members?.find((m) => m.id === frame.user_id);
      if (!member) return;
      member.role = frame.role;
      if (frame.chat_id === state.openChatId) renderChatHeader();
      return;
    }
    case "chat.member_removed":
      if (frame.user_id === state.me.id) {
        dropChat(frame.chat_id);
        renderChatList();
        renderChatPane();
        return;
      }
      return void fetchChat(frame.chat_id);
    case "error":
      return onError(frame);
    default:
      return; // pong, auth.refreshed and types added later: nothing to do
  }
}

function onMessage(message, { live }) {
  const chat = state.chats.get(message.chat_id);
  if (!chat) {
    // A message of a chat we do not know yet (added to a group: it may precede chat.created).
    fetchChat(message.chat_id);
    return;
  }
  if (message.sender_id) chat.typing.delete(message.sender_id);
  const added = chat.merge([message]);
  if (chat.missingNewer) catchUp(chat); // seq > high + 1: fetch the hole
  renderChatList();
  if (chat.id === state.openChatId) {
    renderMessages({ stick: message.sender_id === state.me.id });
    renderChatHeader();
    if (live && added && message.sender_id !== state.me.id) {
      const who = message.kind === "system" ? "" : `${usernameOf(message.sender_id)}: `;
      announce(`${who}${message.text}`);
    }
    maybeMarkRead();
  } else if (live && message.sender_id !== state.me.id) {
    announce(`New message in ${chatTitle(chat)}`);
  }
}

function onTyping(frame) {
  const chat = state.chats.get(frame.chat_id);
  if (!chat || frame.user_id === state.me.id) return;
  chat.typing.set(frame.user_id, Date.now() + TYPING_SHOW_MS);
  setTimeout(() => {
    renderChatList();
    if (chat.id === state.openChatId) renderTyping();
  }, TYPING_SHOW_MS + 50);
  renderChatList();
  if (chat.id === state.openChatId) renderTyping();
}

function onError(frame) {
  const ref = frame.ref ?? "";
  if (ref.startsWith("send:")) {
    const pending = state.outbox.get(ref.slice(5));
    if (!pending) return;
    if (frame.code === "rate_limited" || frame.code === "service_unavailable") {
      const delay = Math.max(250, (frame.retry_after ?? 1) * 1000);
      setTimeout(() => transmit(pending), delay);
      return;
    }
    state.outbox.delete(pending.client_id);
    pending.failed = frame.detail ? String(typeof frame.detail === "string" ? frame.detail : frame.code) : frame.code;
    if (pending.chat_id === state.openChatId) renderMessages();
    return;
  }
  // The socket closes next (4401, or 4503 after the server lost live events); it reconnects and catches up.
  if (["token_expired", "session_revoked", "resync_required"].includes(frame.code)) return;
  // Best effort frames: a failed read, typing, ping or token hand-over is retried by later events.
  if (ref === "heartbeat" || ref.startsWith("read:") || ref === "typing" || ref === "auth.refresh") return;
  showToast(frame.detail && typeof frame.detail === "string" ? frame.detail : `Error: ${frame.code}`);
}

// --- sending, reading, typing ------------------------------------------------------------------------

function sendMessage(chat, text) {
  const pending = {
    client_id: newClientId(),
    chat_id: chat.id,
    text,
    created_at: new Date().toISOString(),
    failed: null,
  };
  chat.pending.set(pending.client_id, pending);
  state.outbox.set(pending.client_id, pending);
  transmit(pending);
  renderMessages({ stick: true });
}

/** Sends (or re-sends, with the same client_id) a pending message; the server stores it once. */
function transmit(pending) {
  if (!state.outbox.has(pending.client_id)) return;
  socket.send({
    type: "message.send",
    ref: `send:${pending.client_id}`,
    chat_id: pending.chat_id,
    client_id: pending.client_id,
    text: pending.text,
  });
}

function retry(pending) {
  pending.failed = null;
  state.outbox.set(pending.client_id, pending);
  transmit(pending);
  renderMessages();
}

/** Marks the open chat read up to what is shown, when the page is visible. */
function maybeMarkRead() {
  const chat = openChat();
  if (!chat || !chat.loaded || !pageVisible() || !socket.ready) return;
  const upTo = chat.high;
  if (upTo <= chat.last_read_seq || upTo <= chat.readRequested) return;
  if (socket.send({ type: "message.read", ref: `read:${chat.id}`, chat_id: chat.id, up_to_seq: upTo })) {
    chat.readRequested = upTo;
  }
}

document.addEventListener("visibilitychange", maybeMarkRead);
window.addEventListener("focus", maybeMarkRead);

function noteTyping(chat) {
  const now = Date.now();
  if (now - (state.lastTypingSent.get(chat.id) ?? 0) < TYPING_SEND_EVERY_MS) return;
  if (socket.send({ type: "typing", ref: "typing", chat_id: chat.id })) state.lastTypingSent.set(chat.id, now);
}

const composerInput = $("composer-input");
composerInput.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
composerInput.addEventListener("input", () => {
  autosize();
  const chat = openChat();
  if (chat && composerInput.value.trim()) noteTyping(chat);
});
$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const chat = openChat();
  const text = composerInput.value.trim();
  if (!chat || !text) return;
  sendMessage(chat, text);
  composerInput.value = "";
  autosize();
  composerInput.focus();
});

function autosize() {
  composerInput.style.height = "auto";
  composerInput.style.height = `${Math.min(composerInput.scrollHeight, 160)}px`;
}

// --- chat list ------------------------------------------------------------------------------------

const renderedChats = new Map(); // chat id -> li

function renderChatList() {
  const list = $("chat-list");
  const chats = [...state.chats.values()].sort(compareChats);
  $("chat-list-empty").hidden = chats.length > 0;
  let previous = null;
  const keep = new Set();
  for (const chat of chats) {
    keep.add(chat.id);
    let item = renderedChats.get(chat.id);
    if (!item) {
      item = buildChatItem(chat);
      renderedChats.set(chat.id, item);
    }
    updateChatItem(item, chat);
    const wanted = previous ? previous.nextSibling : list.firstChild;
    if (wanted !== item) list.insertBefore(item, wanted);
    previous = item;
  }
  for (const [id, item] of renderedChats) {
    if (!keep.has(id)) {
      item.remove();
      renderedChats.delete(id);
    }
  }
}

function buildChatItem(chat) {
  const button = el(
    "button",
    { type: "button", className: "chat-item", dataset: { chatId: chat.id }, onclick: () => navigateToChat(chat.id) },
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
  const name = chatTitle(chat);
  title.textContent = name;
  time.textContent = formatTime(chat.activityAt);
  const typers = chat.typingUsers();
  let previewText = "";
  if (typers.length) previewText = "typing…";
  else if (chat.last_message) {
    const message = chat.last_message;
    const who =
      message.kind === "system"
        ? ""
        : message.sender_id === state.me.id
          ? "You: "
          : chat.kind === "group"
            ? `${usernameOf(message.sender_id)}: `
            : "";
    previewText = `${who}${message.text}`;
  } else previewText = "No messages yet";
  preview.textContent = previewText;
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

// --- routing between list and chat (hash: #chat-<id>) -----------------------------------------------

function navigateToChat(chatId) {
  if (location.hash !== `#chat-${chatId}`) location.hash = `chat-${chatId}`;
  else selectChat(chatId);
}

function routeFromHash() {
  const match = /^#chat-(\d+)$/.exec(location.hash);
  const chatId = match ? Number(match[1]) : null;
  if (chatId !== null && state.chats.has(chatId)) selectChat(chatId);
  else closeChat();
}

window.addEventListener("hashchange", () => {
  if (state.me) routeFromHash();
});

$("back-btn").addEventListener("click", () => {
  if (location.hash) history.pushState(null, "", location.pathname);
  closeChat();
});

function showPane(pane) {
  $("app-view").dataset.pane = pane;
}

function closeChat() {
  const wasOpen = state.openChatId;
  state.openChatId = null;
  renderChatPane();
  renderChatList();
  showPane("list");
  if (wasOpen !== null) renderedChats.get(wasOpen)?.firstChild.focus();
}

async function selectChat(chatId) {
  const chat = state.chats.get(chatId);
  if (!chat) return;
  const switching = state.openChatId !== chatId;
  state.openChatId = chatId;
  showPane("chat");
  renderChatList();
  renderChatPane();
  if (switching) {
    composerInput.value = "";
    autosize();
    // On a phone the keyboard would cover the conversation; there, focus the message list.
    (PHONE_QUERY.matches ? $("messages") : composerInput).focus({ preventScroll: true });
  }
  if (!chat.loaded) {
    $("history-status").textContent = "Loading…";
    try {
      const before = chat.last_seq + 1;
      const page = await session.request("GET", `/api/chats/${chat.id}/messages?before_seq=${before}&limit=${PAGE_SIZE}`);
      if (!chat.loaded) chat.loadInitial(page.results, page.has_more, before);
    } catch (error) {
      $("history-status").textContent = `Could not load messages: ${error.message}`;
      return;
    }
    if (state.openChatId === chat.id) renderMessages({ toBottom: true });
    await catchUp(chat);
    if (state.openChatId === chat.id) await fillViewport(chat);
  } else if (chat.missingNewer) {
    catchUp(chat);
  }
  if (state.openChatId === chat.id) renderMessages({ toBottom: switching });
  maybeMarkRead();
}

// --- open chat ----------------------------------------------------------------------------------

function renderChatPane() {
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

function renderChatHeader() {
  const chat = openChat();
  if (!chat) return;
  $("chat-title").textContent = chatTitle(chat);
  let subtitle = "";
  if (chat.kind === "group") {
    subtitle = chat.members
      ? chat.members.map((member) => (member.id === state.me.id ? "you" : member.username)).join(", ")
      : `${chat.members_count} members`;
  } else subtitle = "Direct chat";
  $("chat-subtitle").textContent = subtitle;
  const role = chat.roleOf(state.me.id);
  $("add-member-btn").hidden = !(chat.kind === "group" && (role === "owner" || role === "admin"));
  renderTyping();
}

function renderTyping() {
  const chat = openChat();
  if (!chat) return;
  const names = chat.typingUsers().map(usernameOf);
  let text = "";
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = "Several people are typing…";
  const typing = $("typing");
  if (typing.textContent !== text) typing.textContent = text;
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
function renderMessages({ stick = false, toBottom = false } = {}) {
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
  let previous = null;
  const keep = new Set();
  for (const message of items) {
    const key = messageKey(message);
    keep.add(key);
    let item = renderedMessages.get(key);
    if (!item) {
      item = buildMessage(chat, message);
      renderedMessages.set(key, item);
    }
    updateMessage(chat, item, message);
    const wanted = previous ? previous.nextSibling : list.firstChild;
    if (wanted !== item) list.insertBefore(item, wanted);
    previous = item;
  }
  for (const [key, item] of renderedMessages) {
    if (!keep.has(key)) {
      item.remove();
      renderedMessages.delete(key);
    }
  }

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
      item.append(el("button", { type: "button", className: "retry link", text: "Retry", onclick: () => retry(message) }));
    }
  }
}

// Infinite scroll upward: load the page before the oldest held message near the top.
$("messages").addEventListener("scroll", () => {
  const chat = openChat();
  if (chat && $("messages").scrollTop < 150) loadOlder(chat);
});

async function loadOlder(chat) {
  if (!chat.loaded || !chat.hasOlder || state.loadingOlder) return;
  state.loadingOlder = true;
  renderMessages();
  try {
    const page = await session.request("GET", `/api/chats/${chat.id}/messages?before_seq=${chat.low}&limit=${PAGE_SIZE}`);
    chat.addOlder(page.results, page.has_more);
  } catch (error) {
    showToast(`Could not load older messages: ${error.message}`);
  } finally {
    state.loadingOlder = false;
  }
  if (state.openChatId === chat.id) renderMessages();
}

/** Loads older pages until the list can scroll (otherwise there is no scroll to trigger them). */
async function fillViewport(chat) {
  const scroller = $("messages");
  while (state.openChatId === chat.id && chat.hasOlder && scroller.scrollHeight <= scroller.clientHeight + 150) {
    const low = chat.low;
    await loadOlder(chat);
    if (chat.low === low) break;
  }
}

// --- dialogs: new direct chat, new group, add member --------------------------------------------------

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
      upsertChat(raw);
      renderChatList();
      $("direct-dialog").close();
      navigateToChat(raw.id);
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
    upsertChat(raw);
    renderChatList();
    $("group-dialog").close();
    navigateToChat(raw.id);
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
      upsertChat(raw);
      renderChatHeader();
      $("member-dialog").close();
      announce(`${user.username} added`);
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

// --- start ------------------------------------------------------------------------------------------

// For tests and debugging in the console: the live objects (nothing here is secret to this tab).
window.messenger = { session, socket, state };

if (session.loggedIn) {
  session
    .resume()
    .then(startApp)
    .catch((error) => {
      if (session.loggedIn) {
        // The server is unreachable: keep the session and try again from the app.
        state.me = session.user;
        if (state.me) startApp();
        else showAuth(error.message);
      }
    });
} else {
  showAuth();
}
