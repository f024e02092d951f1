// The browser client's entry point: wires the session (api.js), the live socket (socket.js), the
// chat state (store.js), the rendering (view.js) and the dialogs (dialogs.js) to the page, and
// implements the protocol's client rules: sync on every (re)connect, merge by seq, fetch holes,
// resend unacknowledged messages, mark read when visible. No framework and no build step.

import { ApiError, Session, ssoConfig } from "./api.js";
import { parseInvite, setupChannels } from "./channels.js";
import { setupDialogs } from "./dialogs.js";
import { setupFeed } from "./feed.js";
import { $, announce, bidiSafe, showToast } from "./dom.js";
import { formatDuration, messageGist } from "./media.js";
import { closeMessageMenu, openMessageMenu } from "./menu.js";
import { LiveSocket, Requests } from "./socket.js";
import { Chat, newClientId } from "./store.js";
import { MAX_FILES, renderTray, Uploads, VoiceRecorder, voiceFileName } from "./uploads.js";
import {
  canChange,
  chatButton,
  chatTitle,
  flashMessage,
  initView,
  isLike,
  isStaff,
  LIKE,
  likeOf,
  openChat,
  renderChatHeader,
  renderChatList,
  renderChatPane,
  renderComposerContext,
  renderMessages,
  renderPinned,
  renderTyping,
  resetView,
  usernameOf,
} from "./view.js";

const TYPING_SEND_EVERY_MS = 3_000;
const TYPING_SHOW_MS = 4_000;
const PAGE_SIZE = 50;
const CATCH_UP_PAGE = 200;
const PHONE_QUERY = window.matchMedia("(max-width: 720px)");

const session = new Session();
const socket = new LiveSocket(session);
const requests = new Requests(socket);
const uploads = new Uploads(session);
const recorder = new VoiceRecorder();

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
  composing: null, // {kind: "reply" | "edit", chatId, seq} while the composer answers or edits
  pinIndex: new Map(), // chat id -> which pin the pinned bar shows (0 = the newest)
  feedOpen: false, // the feed is shown in the main pane (no chat is open then)
  watching: null, // the channel this socket watches (channel.watch), or null
};

// --- small helpers -----------------------------------------------------------------------------

function rememberMembers(chat) {
  for (const member of chat.members ?? []) state.usernames.set(member.id, member.username);
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

// --- single sign-on ---------------------------------------------------------------------------------
// "Sign in with <provider>" is a plain link: a full-page trip to the provider and back to the
// server's callback, which sends the browser to "/#sso_code=<one-time code>" (traded here for
// tokens) or "/#sso_error=<code>". The fragment is read once and removed from the URL and history.

const SSO_ERRORS = {
  sso_state_mismatch: "The sign-in could not be checked (it was started in another tab or browser, or took too long). Please try again.",
  sso_denied: "The sign-in was cancelled at the provider.",
  sso_disabled: "Single sign-on is not available on this server.",
  sso_unavailable: "The sign-in provider cannot be reached. Please try again later.",
  account_disabled: "This account is deactivated.",
  invalid_sso_code: "The sign-in expired before it was completed. Please sign in again.",
  sso_failed: "Signing in with the provider failed. Please try again.",
};

function ssoMessage(code) {
  return Object.hasOwn(SSO_ERRORS, code) ? SSO_ERRORS[code] : SSO_ERRORS.sso_failed;
}

async function showSsoButton() {
  const sso = await ssoConfig();
  if (!sso?.enabled || !sso.login_url) return;
  const link = $("sso-link");
  link.href = sso.login_url;
  link.textContent = `Sign in with ${bidiSafe(sso.provider || "SSO")}`;
  $("sso").hidden = false;
}

/** {kind: "sso_code" | "sso_error", value} from the URL fragment the SSO callback left, or null. */
function takeSsoAnswer() {
  const match = /^#(sso_code|sso_error)=([^&]*)$/.exec(location.hash);
  if (!match) return null;
  history.replaceState(null, "", location.pathname + location.search);
  let value = "";
  try {
    value = decodeURIComponent(match[2]);
  } catch {
    /* malformed: an unknown code */
  }
  return { kind: match[1], value };
}

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
  state.feedOpen = false;
  state.watching = null;
  channels.reset();
  feed.reset();
  state.chats.clear();
  state.usernames.clear();
  state.openChatId = null;
  state.outbox.clear();
  state.buffered = [];
  state.syncing = false;
  recorder.cancel();
  uploads.clear();
  renderTray(uploads, null);
  resetView();
  setConnectionStatus("stopped");
}

function startApp() {
  state.me = session.user;
  $("me-name").textContent = bidiSafe(state.me.username);
  $("auth-view").hidden = true;
  $("app-view").hidden = false;
  renderChatPane();
  refreshChats()
    .then(() => routeFromHash())
    .catch((error) => showToast(`Could not load chats: ${error.message}`));
  channels.refreshMine().catch(() => {});
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
  // A watch ends with its socket: watch again first, then catch up (PROTOCOL.md §6, §9).
  if (state.watching !== null) sendWatch(state.watching);
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
    // channel.post announcements may have been lost while offline.
    feed.resync();
    channels.refreshMine().catch(() => {});
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
  // A channel held only to read it (not on its staff) is not in the list.
  for (const [id, chat] of [...state.chats]) if (!seen.has(id) && !chat.reader) dropChat(id);
  renderChatList();
  renderChatPane();
}

function upsertChat(raw) {
  let chat = state.chats.get(raw.id);
  if (chat) {
    chat.update(raw);
    chat.reader = false; // listed: a member now
  } else {
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
    if (chat.behind) catchUp(chat);
  } catch (error) {
    if (error.status === 404) dropChat(chatId);
  }
  renderChatList();
  renderChatPane();
}

/**
 * Brings a loaded chat up to date from /changes?after_version=<held version>, page by page: new
 * messages and every edit, delete, reaction and pin since (PROTOCOL.md §9). One at a time per
 * chat; a gap noticed while it runs makes it go round once more.
 */
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
          `/api/chats/${chat.id}/changes?after_version=${chat.version}&limit=${CATCH_UP_PAGE}`,
        );
        const before = chat.version;
        chat.applyChanges(page);
        hasMore = page.has_more && chat.version > before;
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
      if (state.openChatId === chat.id) {
        renderMessages();
        renderPinned();
      }
      maybeMarkRead();
    });
  return job.catch(() => {});
}

// --- server frames -----------------------------------------------------------------------------

function handleFrame(frame) {
  applyFrame(frame);
  // The reply to one of our own requests (ops.js): the event above, plus `ref` and `changed`.
  if (frame.type !== "error" && frame.ref) requests.answer(frame.ref, frame);
}

function applyFrame(frame) {
  switch (frame.type) {
    case "message.new":
      if (state.chats.get(frame.message.chat_id)?.kind === "channel") feed.message(frame.message);
      return onMessage(frame.message, { live: true });
    case "channel.post":
      return feed.channelPost(frame);
    case "channel.watching":
      return;
    case "message.ack":
      state.outbox.delete(frame.client_id);
      return onMessage(frame.message, { live: false });
    case "message.forwarded":
      for (const message of frame.messages) onMessage(message, { live: false });
      return;
    case "message.edited":
      feed.edited(frame.message);
      return onChange(frame.message.chat_id, frame.message.version, (chat) =>
        chat.merge([frame.message], { fromEvent: true }),
      );
    case "message.deleted":
      feed.deleted(frame.chat_id, frame.seqs);
      return onChange(frame.chat_id, frame.version, (chat) => {
        chat.applyDeleted(frame.seqs, frame.version);
        if (chat.id === state.openChatId) composer.forget(frame.seqs);
      });
    case "message.reactions":
      feed.reactions(frame, state.me.id);
      return onChange(frame.chat_id, frame.version, (chat) => chat.applyReactions(frame, state.me.id));
    case "chat.pins":
      return onChange(frame.chat_id, frame.version, (chat) => chat.applyPins(frame.pinned_seqs, frame.version));
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
  const verdict = chat.admit(message.version);
  let added = 0;
  if (verdict === "apply" || verdict === "unloaded") added = chat.merge([message], { fromEvent: true });
  else if (verdict === "gap") {
    chat.noteLastMessage(message);
    catchUp(chat); // a change before this one was missed: /changes brings both
  }
  if (chat.behind) catchUp(chat);
  renderChatList();
  if (chat.id === state.openChatId) {
    renderMessages({ stick: message.sender_id === state.me.id });
    renderChatHeader();
    if (live && added && message.sender_id !== state.me.id) {
      // A channel's posts are the channel's, whoever of its staff wrote them.
      const author = chat.kind === "channel" ? chatTitle(chat) : usernameOf(message.sender_id);
      const who = message.kind === "system" ? "" : `${bidiSafe(author)}: `;
      announce(`${who}${messageGist(message)}`);
    }
    maybeMarkRead();
  } else if (live && message.sender_id !== state.me.id) {
    announce(`New message in ${bidiSafe(chatTitle(chat))}`);
  }
}

/**
 * A change event with the chat's next version is applied by `apply(chat)`; an old one is
 * ignored; after a jump nothing is applied and /changes repairs the chat (PROTOCOL.md §9).
 */
function onChange(chatId, version, apply) {
  const chat = state.chats.get(chatId);
  if (!chat) return;
  const verdict = chat.admit(version);
  if (verdict === "old") return;
  if (verdict === "gap") return void catchUp(chat);
  apply(chat);
  renderChatList();
  if (chat.id === state.openChatId) {
    renderMessages();
    renderPinned();
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
  if (requests.fail(ref, frame)) return;
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
  if (ref === "watch") return; // the channel went away or became unreadable: it shows no live posts
  if (ref === "heartbeat" || ref.startsWith("read:") || ref === "typing" || ref === "auth.refresh") return;
  showToast(frame.detail && typeof frame.detail === "string" ? frame.detail : `Error: ${frame.code}`);
}

// --- sending, reading, typing ------------------------------------------------------------------------

/** `attachments`: uploads (POST /api/uploads answers) the message carries; `text` is then a caption. */
function sendMessage(chat, text, replyToSeq = null, attachments = []) {
  const pending = {
    client_id: newClientId(),
    chat_id: chat.id,
    text,
    reply_to_seq: replyToSeq,
    attachment_ids: attachments.map((attachment) => attachment.id),
    attachments, // shown while pending: the uploads' own signed URLs
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
    ...(pending.reply_to_seq ? { reply_to_seq: pending.reply_to_seq } : {}),
    ...(pending.attachment_ids.length ? { attachment_ids: pending.attachment_ids } : {}),
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
  // Readers of a channel have no read state there (PROTOCOL.md §6 channel.watch).
  if (!chat || chat.reader || !chat.loaded || !pageVisible() || !socket.ready) return;
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
  } else if (event.key === "Escape" && state.composing && !recorder.active) {
    event.preventDefault();
    composer.cancel();
  } else if (event.key === "ArrowUp" && !composerInput.value && !state.composing) {
    // ↑ in an empty composer edits your last message, as in Telegram and Slack.
    const chat = openChat();
    const last = chat?.sortedMessages().findLast((message) => canChange(chat, message).edit);
    if (last) {
      event.preventDefault();
      composer.edit(chat, last.seq);
    }
  }
});
composerInput.addEventListener("input", () => {
  autosize();
  const chat = openChat();
  if (chat && composerInput.value.trim() && state.composing?.kind !== "edit") noteTyping(chat);
});
$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const chat = openChat();
  if (!chat) return;
  const text = composerInput.value.trim();
  const mode = state.composing?.chatId === chat.id ? state.composing : null;
  if (mode?.kind === "edit") {
    if (!text) return;
    const message = chat.message(mode.seq);
    if (message && message.text !== text) run(ops.edit(chat, mode.seq, text), "Could not edit");
  } else {
    const files = uploads.summary(chat.id);
    if (files.uploading || files.failed) {
      // Send is disabled meanwhile; Enter says why.
      announce(files.failed ? "Retry or remove the files that failed to upload." : "Wait until the files are uploaded.");
      return;
    }
    const attachments = uploads.take(chat.id);
    if (!text && !attachments.length) return;
    sendMessage(chat, text, mode?.kind === "reply" ? mode.seq : null, attachments);
  }
  composer.cancel({ clear: true });
});
$("composer-context-cancel").addEventListener("click", () => composer.cancel());

// --- attachments: pick, drop, paste, upload, record (uploads.js, media.js) -------------------------

/** Starts uploading files into the open chat's strip above the composer. */
function attachFiles(files) {
  const chat = openChat();
  files = [...files].filter((file) => file.size > 0 || file.type);
  if (!chat || !files.length || state.composing?.kind === "edit") return;
  const refused = uploads.add(chat.id, files);
  if (refused) showToast(`At most ${MAX_FILES} files go in one message.`);
  announce(`${files.length - refused} ${files.length - refused === 1 ? "file" : "files"} uploading`);
}

/** Send waits for the uploads: disabled while one runs or has failed. */
function renderSendState() {
  const chat = openChat();
  const files = chat ? uploads.summary(chat.id) : { uploading: 0, failed: 0 };
  const send = $("send-btn");
  send.disabled = Boolean(files.uploading || files.failed);
  send.title = files.uploading ? "Wait until the files are uploaded" : files.failed ? "Retry or remove the files that failed" : "";
}

uploads.addEventListener("change", (event) => {
  const chat = openChat();
  if (!chat || event.detail.chatId !== chat.id) return;
  renderTray(uploads, chat.id, event.detail.item);
  if (!event.detail.item) renderSendState();
});

// A voice message goes on its own as soon as it is uploaded.
uploads.addEventListener("uploaded", (event) => {
  const { item } = event.detail;
  if (!item.autoSend) return;
  const chat = state.chats.get(item.chatId);
  const [attachment] = uploads.take(item.chatId, (other) => other === item);
  if (chat && attachment) sendMessage(chat, "", item.replyToSeq ?? null, [attachment]);
});

$("attach-btn").addEventListener("click", () => $("attach-input").click());
$("attach-input").addEventListener("change", (event) => {
  attachFiles(event.currentTarget.files);
  event.currentTarget.value = ""; // the same file can be picked again
});

// Pasted images (screenshots) and files become attachments; pasted text stays text.
composerInput.addEventListener("paste", (event) => {
  const files = [...(event.clipboardData?.files ?? [])];
  if (!files.length) return;
  event.preventDefault();
  attachFiles(files);
});

// Files dropped anywhere on the conversation.
const chatView = $("chat-view");
const carriesFiles = (event) => [...(event.dataTransfer?.types ?? [])].includes("Files");
for (const type of ["dragenter", "dragover"]) {
  chatView.addEventListener(type, (event) => {
    if (!carriesFiles(event) || state.composing?.kind === "edit") return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    chatView.classList.add("dropping");
  });
}
chatView.addEventListener("dragleave", (event) => {
  if (!chatView.contains(event.relatedTarget)) chatView.classList.remove("dropping");
});
chatView.addEventListener("drop", (event) => {
  chatView.classList.remove("dropping");
  if (!carriesFiles(event)) return;
  event.preventDefault();
  attachFiles(event.dataTransfer.files);
});

// Voice messages: 🎤 starts, 🎤 again stops and sends, Escape or × cancels.
const recordButton = $("record-btn");
if (!VoiceRecorder.supported) recordButton.hidden = true;

function renderRecording() {
  const recording = recorder.active;
  $("recording-bar").hidden = !recording;
  recordButton.setAttribute("aria-pressed", String(recording));
  const label = recording ? "Stop recording and send" : "Record a voice message";
  recordButton.setAttribute("aria-label", label);
  recordButton.title = label;
  recordButton.classList.toggle("recording", recording);
  $("recording-time").textContent = formatDuration(recorder.elapsedMs / 1000);
}

recorder.addEventListener("state", renderRecording);
recorder.addEventListener("tick", () => ($("recording-time").textContent = formatDuration(recorder.elapsedMs / 1000)));

recordButton.addEventListener("click", async () => {
  const chat = openChat();
  if (!chat) return;
  if (!recorder.active) {
    try {
      if (await recorder.start()) announce("Recording a voice message");
    } catch (error) {
      showToast(`Cannot record: ${error.name === "NotAllowedError" ? "the microphone is not allowed." : error.message}`);
    }
    return;
  }
  const recording = await recorder.stop();
  if (!recording) return;
  const mode = state.composing?.chatId === chat.id && state.composing.kind === "reply" ? state.composing : null;
  uploads.add(chat.id, [recording.blob], { voice: true, name: voiceFileName(recording.type) });
  const item = uploads.list(chat.id).at(-1);
  if (item && mode) {
    item.replyToSeq = mode.seq;
    composer.cancel();
  }
});
$("recording-cancel").addEventListener("click", () => {
  recorder.cancel();
  announce("Recording cancelled");
  composerInput.focus();
});
window.addEventListener(
  "keydown",
  (event) => {
    if (event.key !== "Escape" || !recorder.active || document.querySelector("dialog[open]")) return;
    event.preventDefault();
    event.stopPropagation();
    recorder.cancel();
    announce("Recording cancelled");
  },
  true,
);

/** The composer answers a message (reply) or rewrites one (edit); Escape or × goes back. */
const composer = {
  reply(chat, seq) {
    const wasEditing = state.composing?.kind === "edit";
    state.composing = { kind: "reply", chatId: chat.id, seq };
    if (wasEditing) composerInput.value = "";
    this._show();
  },
  edit(chat, seq) {
    state.composing = { kind: "edit", chatId: chat.id, seq };
    composerInput.value = chat.message(seq)?.text ?? "";
    this._show();
    composerInput.setSelectionRange(composerInput.value.length, composerInput.value.length);
  },
  cancel({ clear = false } = {}) {
    const wasEditing = state.composing?.kind === "edit";
    state.composing = null;
    if (clear || wasEditing) composerInput.value = "";
    this._show();
  },
  /** The messages were deleted: stop answering or editing them. */
  forget(seqs) {
    if (state.composing && seqs.includes(state.composing.seq)) this.cancel();
  },
  _show() {
    renderComposerContext();
    autosize();
    composerInput.focus();
  },
};

// --- changing messages: edit, delete, react, pin, forward (PROTOCOL.md §6) ------------------------

/** Shows a refused change as a toast. */
function run(promise, what) {
  return promise.catch((error) => {
    showToast(`${what}: ${error.message}`);
    return null;
  });
}

/** Each one is a socket request; its reply is applied as the event it carries (handleFrame). */
const ops = {
  edit: (chat, seq, text) => requests.send({ type: "message.edit", chat_id: chat.id, seq, text }),
  delete: (chat, seqs) => requests.send({ type: "message.delete", chat_id: chat.id, seqs }),
  react(chat, message, emoji) {
    const mine = message.reactions?.find((reaction) => reaction.emoji === emoji)?.me;
    const type = mine ? "reaction.remove" : "reaction.add";
    return requests.send({ type, chat_id: chat.id, seq: message.seq, emoji });
  },
  pin: (chat, seq, pinned) => requests.send({ type: "message.pin", chat_id: chat.id, seq, pinned }),
  forward: (chat, seqs, target) =>
    requests.send({
      type: "message.forward",
      from_chat_id: chat.id,
      seqs,
      to_chat_id: target.id,
      client_ids: seqs.map(() => newClientId()),
    }),
};

const QUICK_REACTIONS = ["👍", "❤️", "😂", "😮", "😢", "🙏"];

/** The message's menu: quick reactions and what the reader may do with it. */
function showMessageMenu(chat, message, anchor, point) {
  const may = canChange(chat, message);
  const items = [
    may.reply && { label: "Reply", run: () => composer.reply(chat, message.seq) },
    may.forward && { label: "Forward", run: () => forwardMessage(chat, message) },
    may.edit && { label: "Edit", run: () => composer.edit(chat, message.seq) },
    may.pin && {
      label: message.pinned ? "Unpin" : "Pin",
      run: () => run(ops.pin(chat, message.seq, !message.pinned), "Could not pin"),
    },
    may.delete && { label: "Delete", danger: true, run: () => deleteMessage(chat, message) },
  ].filter(Boolean);
  openMessageMenu({
    anchor,
    point,
    items,
    reactions: may.react ? QUICK_REACTIONS : null,
    onReact: (emoji) => react(chat, message.seq, emoji),
  });
}

function react(chat, seq, emoji) {
  const message = chat.message(seq);
  if (message) run(ops.react(chat, message, emoji), "Could not react");
}

async function deleteMessage(chat, message) {
  if (!(await dialogs.confirm({ title: "Delete message?", text: "It will be deleted for everyone in this chat.", action: "Delete" }))) return;
  await run(ops.delete(chat, [message.seq]), "Could not delete");
}

async function forwardMessage(chat, message) {
  const target = await dialogs.pickChat({
    title: "Forward to…",
    chats: [...state.chats.values()].filter((other) => !other.reader && (other.kind !== "channel" || isStaff(other))),
  });
  if (!target) return;
  const reply = await run(ops.forward(chat, [message.seq], target), "Could not forward");
  if (reply) {
    announce(`Forwarded to ${bidiSafe(chatTitle(target))}`);
    navigateToChat(target.id);
  }
}

async function showEdits(chat, message) {
  try {
    const edits = await session.request("GET", `/api/chats/${chat.id}/messages/${message.seq}/edits`);
    dialogs.showEdits({ edits, current: message });
  } catch (error) {
    showToast(`Could not load the edit history: ${error.message}`);
  }
}

/** Scrolls to a message (a reply's original, a pin), loading older pages until it is held. */
async function jumpTo(chat, seq) {
  while (state.openChatId === chat.id && chat.loaded && seq < chat.low && chat.hasOlder) {
    const low = chat.low;
    try {
      const page = await session.request("GET", `/api/chats/${chat.id}/messages?before_seq=${low}&limit=${CATCH_UP_PAGE}`);
      chat.addOlder(page.results, page.has_more);
    } catch (error) {
      showToast(`Could not load the message: ${error.message}`);
      return;
    }
    if (chat.low === low) break;
    renderMessages();
  }
  if (state.openChatId === chat.id) flashMessage(seq);
}

/** The pinned bar shows one pin at a time; a click jumps to it and moves on to the next. */
function onPinnedClick(chat) {
  const seqs = chat.pinned_seqs;
  if (!seqs.length) return;
  const index = Math.min(state.pinIndex.get(chat.id) ?? 0, seqs.length - 1);
  jumpTo(chat, seqs[index]);
  state.pinIndex.set(chat.id, (index + 1) % seqs.length);
  renderPinned();
}

/** A pinned message outside the held window: fetched once, kept in chat.loose. */
async function needMessage(chat, seq) {
  if (chat.loose.has(seq)) return;
  chat.loose.set(seq, null);
  try {
    chat.keepLoose(await session.request("GET", `/api/chats/${chat.id}/messages/${seq}`));
  } catch {
    chat.loose.delete(seq);
    return;
  }
  if (state.openChatId === chat.id) renderPinned();
}

function autosize() {
  composerInput.style.height = "auto";
  composerInput.style.height = `${Math.min(composerInput.scrollHeight, 160)}px`;
}

// --- routing between list, chat, channel and feed (hash: #chat-<id>, #channel-<id>, #feed) ------------

function navigateToChat(chatId) {
  if (location.hash !== `#chat-${chatId}`) location.hash = `chat-${chatId}`;
  else selectChat(chatId);
}

function navigateToChannel(channelId) {
  if (location.hash !== `#channel-${channelId}`) location.hash = `channel-${channelId}`;
  else routeChannel(channelId);
}

function navigateToFeed() {
  if (location.hash !== "#feed") location.hash = "feed";
  else openFeed();
}

function routeFromHash() {
  const hash = location.hash;
  const chat = /^#chat-(\d+)$/.exec(hash);
  const channel = /^#channel-(\d+)$/.exec(hash);
  const invite = hash.startsWith("#join-") ? parseInvite(hash) : null;
  if (chat && state.chats.has(Number(chat[1]))) selectChat(Number(chat[1]));
  else if (channel) routeChannel(Number(channel[1]));
  else if (hash === "#feed") openFeed();
  else if (invite) {
    // An invite link was opened: offer to join (the link's token is not kept in the history).
    history.replaceState(null, "", location.pathname);
    closeChat();
    channels.showSection("channels");
    channels.offerJoin(invite);
  } else closeChat();
}

/**
 * Opens a channel. One we run is a chat of ours; one we only read is fetched (its object, then
 * its history like a chat's) and held while it is open, marked `reader`, with this socket
 * watching it for live posts.
 */
async function routeChannel(channelId) {
  if (channels.section() === "feed") channels.showSection("channels");
  if (state.chats.has(channelId)) {
    selectChat(channelId);
    return;
  }
  let info;
  try {
    info = await channels.load(channelId);
  } catch (error) {
    if (location.hash === `#channel-${channelId}`) {
      showToast(error.status === 404 ? "This channel does not exist or is private." : `Could not open the channel: ${error.message}`);
      history.replaceState(null, "", location.pathname);
      closeChat();
    }
    return;
  }
  if (location.hash !== `#channel-${channelId}` || !state.me) return; // navigated elsewhere meanwhile
  if (!state.chats.has(channelId)) {
    const chat = new Chat(
      {
        id: info.id,
        kind: "channel",
        title: info.title,
        created_at: info.created_at,
        last_seq: info.last_seq,
        version: info.version,
        pinned_seqs: info.pinned_seqs,
      },
      state.me.id,
    );
    chat.reader = info.role === null;
    state.chats.set(chat.id, chat);
  }
  selectChat(channelId);
}

function sendWatch(chatId) {
  socket.send({ type: "channel.watch", ref: "watch", chat_id: chatId });
}

/** Leaves the open chat: a channel held only to read it is dropped and no longer watched. */
function leaveOpenChat(nextId = null) {
  const previous = state.openChatId === null ? null : state.chats.get(state.openChatId);
  if (previous?.reader && previous.id !== nextId) {
    state.chats.delete(previous.id);
    state.catchUps.delete(previous.id);
  }
  const next = nextId === null ? null : state.chats.get(nextId);
  const watch = next?.reader ? next.id : null;
  if (watch !== state.watching) {
    state.watching = watch;
    sendWatch(watch); // null stops watching; a new watch replaces the old one
  }
}

function openFeed() {
  leaveOpenChat(null);
  state.openChatId = null;
  state.feedOpen = true;
  recorder.cancel();
  closeMessageMenu();
  channels.showSection("feed");
  showPane("chat");
  renderChatPane();
  renderChatList();
  feed.show();
  $("feed").focus({ preventScroll: true });
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
  const wasReader = wasOpen !== null && state.chats.get(wasOpen)?.reader;
  leaveOpenChat(null);
  state.openChatId = null;
  if (state.feedOpen) {
    state.feedOpen = false;
    feed.hide();
  }
  recorder.cancel();
  renderChatPane();
  renderChatList();
  showPane("list");
  if (wasOpen !== null && !wasReader) chatButton(wasOpen)?.focus();
}

async function selectChat(chatId) {
  const chat = state.chats.get(chatId);
  if (!chat) return;
  const switching = state.openChatId !== chatId;
  // A channel's object (handle, subscribers, my subscription) is read fresh on every open.
  if (switching && chat.kind === "channel" && !chat.reader) channels.load(chatId).catch(() => {});
  leaveOpenChat(chatId);
  state.openChatId = chatId;
  if (state.feedOpen) {
    state.feedOpen = false;
    feed.hide();
  }
  showPane("chat");
  renderChatList();
  renderChatPane();
  if (switching) {
    closeMessageMenu();
    recorder.cancel();
    renderTray(uploads, chatId);
    renderSendState();
    composerInput.value = "";
    state.composing = null;
    renderComposerContext();
    autosize();
    // On a phone the keyboard would cover the conversation; there, focus the message list
    // (and in a channel we only read, which has no composer).
    const noComposer = chat.kind === "channel" && !isStaff(chat);
    (PHONE_QUERY.matches || noComposer ? $("messages") : composerInput).focus({ preventScroll: true });
  }
  if (!chat.loaded) {
    $("history-status").textContent = "Loading…";
    try {
      const before = chat.last_seq + 1;
      const version = chat.serverVersion; // the page has everything up to it; /changes the rest
      const page = await session.request("GET", `/api/chats/${chat.id}/messages?before_seq=${before}&limit=${PAGE_SIZE}`);
      if (!chat.loaded) chat.loadInitial(page.results, page.has_more, before, version);
    } catch (error) {
      $("history-status").textContent = `Could not load messages: ${error.message}`;
      return;
    }
    if (state.openChatId === chat.id) renderMessages({ toBottom: true });
    await catchUp(chat);
    if (state.openChatId === chat.id) await fillViewport(chat);
  } else if (chat.behind) {
    catchUp(chat);
  }
  // No forced scroll here: the reader may have scrolled up while the history was loading.
  if (state.openChatId === chat.id) renderMessages();
  maybeMarkRead();
}

// Infinite scroll upward: load the page before the oldest held message near the top.
$("messages").addEventListener("scroll", () => {
  closeMessageMenu();
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

// --- channels and the feed (channels.js, feed.js) ----------------------------------------------------

const channels = setupChannels({
  session,
  open: navigateToChannel,
  section(name) {
    if (name === "feed") navigateToFeed();
    else if (state.feedOpen) {
      history.pushState(null, "", location.pathname);
      closeChat();
    }
  },
  changed(channel) {
    const chat = state.chats.get(channel.id);
    if (chat && channel.title !== undefined) chat.title = channel.title;
    if (chat) renderChatList();
    if (channel.id === state.openChatId) {
      renderChatHeader();
      renderMessages(); // may they like posts now?
    }
  },
  subscriptionChanged: () => feed.resync(),
});

/** Likes a post (or takes the like back): PROTOCOL.md §10 "Channels". Resolves with the answer or null. */
async function sendLike(postId, liked) {
  try {
    return await session.request(liked ? "POST" : "DELETE", `/api/posts/${postId}/like`, undefined, {
      headers: { "Idempotency-Key": newClientId() },
    });
  } catch (error) {
    showToast(`Could not ${liked ? "like" : "unlike"} the post: ${error.status === 403 ? "subscribe to the channel first." : error.message}`);
    return null;
  }
}

/**
 * A like answer: the held post's ❤️ count and our flag. Its version is left alone, so the
 * message.reactions event (the same change) still applies, and a later change overrides it.
 */
function applyLike(answer) {
  feed.setLike(answer.id, answer.likes_count, answer.liked_by_me);
  const chat = state.chats.get(answer.channel_id);
  const held = chat?.messages.get(answer.seq);
  if (!held) return;
  const others = (held.reactions ?? []).filter((reaction) => !isLike(reaction.emoji));
  const heart = answer.likes_count ? [{ emoji: LIKE, count: answer.likes_count, me: answer.liked_by_me }] : [];
  chat.messages.set(answer.seq, { ...held, reactions: [...heart, ...others] });
  if (chat.id === state.openChatId) renderMessages();
}

function mayLike(channelId, chat = state.chats.get(channelId)) {
  if ((chat && isStaff(chat)) || channels.subscribed(channelId)) return true;
  showToast("Subscribe to the channel to like its posts.");
  return false;
}

async function likePost(chat, seq) {
  const message = chat.message(seq);
  if (!message || message.deleted || !mayLike(chat.id, chat)) return;
  const answer = await sendLike(message.id, !likeOf(message).me);
  if (answer) applyLike(answer);
}

const feed = setupFeed({
  session,
  open: navigateToChannel,
  subscribed: (channelId) => channels.subscribed(channelId),
  async like(post) {
    if (!mayLike(post.channel.id)) return null;
    const answer = await sendLike(post.id, !post.liked_by_me);
    if (answer) applyLike(answer);
    return answer;
  },
});

$("subscribe-btn").addEventListener("click", async (event) => {
  const chat = openChat();
  if (!chat) return;
  const button = event.currentTarget;
  button.disabled = true;
  const channel = await channels.toggle(chat.id);
  button.disabled = false;
  if (channel) announce(channel.subscribed ? "Subscribed" : "Unsubscribed");
});
$("invite-btn").addEventListener("click", () => {
  const chat = openChat();
  if (chat) channels.showInvite(chat.id);
});
$("feed-back-btn").addEventListener("click", () => {
  history.pushState(null, "", location.pathname);
  closeChat();
  $("tab-feed").focus();
});

// --- start ------------------------------------------------------------------------------------------

initView(state, {
  open: navigateToChat,
  retry,
  menu: showMessageMenu,
  react,
  jump: jumpTo,
  edits: showEdits,
  pinned: onPinnedClick,
  unpin: (chat, seq) => run(ops.pin(chat, seq, false), "Could not unpin"),
  needMessage,
  like: likePost,
  channelInfo: (chatId) => channels.info(chatId),
});

const dialogs = setupDialogs({
  session,
  state,
  openChat,
  chatCreated(raw) {
    upsertChat(raw);
    renderChatList();
    navigateToChat(raw.id);
  },
  memberAdded(raw, user) {
    upsertChat(raw);
    renderChatHeader();
    announce(`${bidiSafe(user.username)} added`);
  },
});

// For tests and debugging in the console: the live objects (nothing here is secret to this tab).
window.messenger = { session, socket, state, channels, feed };

showSsoButton();
const ssoAnswer = takeSsoAnswer();

if (ssoAnswer?.kind === "sso_code") {
  session
    .loginWithSsoCode(ssoAnswer.value)
    .then(startApp)
    .catch((error) => {
      const unreachable = !(error instanceof ApiError) || error.code === "network_error";
      showAuth(unreachable ? error.message : ssoMessage(error.code));
    });
} else if (ssoAnswer?.kind === "sso_error" && !session.loggedIn) {
  showAuth(ssoMessage(ssoAnswer.value));
} else if (session.loggedIn) {
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
