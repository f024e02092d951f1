// Rendering of the chat list and the open conversation. Elements are created once per item and
// updated in place (keyed by chat id, or by seq / client_id for messages), so focus, scroll
// position and screen readers are not disturbed by re-renders.

import { $, bdi, bidiSafe, el, formatTime } from "./dom.js";
import { messageGist, renderAttachments } from "./media.js";
import { compareChats } from "./store.js";

let state = null;
let actions = {};

/**
 * `appState` is the app's state object; `handlers` are the user actions: open(chatId),
 * retry(pending), menu(chat, message, anchor, point), react(chat, seq, emoji), jump(chat, seq),
 * edits(chat, message), pinned(chat), unpin(chat, seq), needMessage(chat, seq), like(chat, seq),
 * channelInfo(chatId) (a channel's object, PROTOCOL.md §2 "Channel", or null while unknown).
 */
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
  if (chat.kind === "channel") return chat.title || "Channel";
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
  // Channels read without being on their staff are held while open, but are not chats of ours.
  const chats = [...state.chats.values()].filter((chat) => !chat.reader).sort(compareChats);
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
    parts = [...who, message.deleted ? "Message deleted" : bdi(messageGist(message))];
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
  const feed = !chat && state.feedOpen;
  $("no-chat").hidden = Boolean(chat) || feed;
  $("chat-view").hidden = !chat;
  $("feed-view").hidden = !feed;
  if (!chat) {
    $("message-list").replaceChildren();
    renderedMessages.clear();
    renderedFor = null;
    return;
  }
  renderChatHeader();
  renderMessages();
  renderPinned();
  renderComposerContext();
}

/**
 * What the reader may do with a held message (the server decides; this only hides what it
 * would refuse): PROTOCOL.md §6, "Changing messages".
 */
export function canChange(chat, message) {
  const none = { reply: false, forward: false, edit: false, delete: false, pin: false, react: false };
  if (message.seq === undefined || message.kind === "system" || message.deleted) return none;
  const mine = message.sender_id === state.me.id;
  const role = chat.roleOf(state.me.id);
  const admin = chat.kind !== "direct" && (role === "owner" || role === "admin");
  if (chat.kind === "channel" && !admin) {
    // A reader forwards posts; a subscriber also reacts (PROTOCOL.md §2, "Channel").
    const info = actions.channelInfo?.(chat.id);
    return { ...none, forward: true, react: Boolean(info?.subscribed) };
  }
  return {
    reply: true,
    forward: true,
    edit: mine && !message.forwarded_from,
    delete: mine || admin,
    pin: chat.kind === "direct" || admin,
    react: true,
  };
}

/** Whether the reader runs the channel (owner or admin): they post, the others read. */
export function isStaff(chat) {
  const role = chat.roleOf(state.me.id) ?? actions.channelInfo?.(chat.id)?.role ?? null;
  return role === "owner" || role === "admin";
}

/** "@handle · 1 523 subscribers" (or "Private channel · …") for a channel object. */
export function channelSummary(info) {
  const count = info.subscribers_count;
  const subscribers = `${count.toLocaleString()} ${count === 1 ? "subscriber" : "subscribers"}`;
  return `${info.handle ? `@${info.handle}` : "Private channel"} · ${subscribers}`;
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
  } else if (chat.kind === "channel") {
    const info = actions.channelInfo?.(chat.id);
    subtitle = [info ? channelSummary(info) : "Channel"];
  } else subtitle = ["Direct chat"];
  $("chat-subtitle").replaceChildren(...subtitle);
  $("chat-subtitle").title = chat.kind === "channel" ? (actions.channelInfo?.(chat.id)?.about ?? "") : "";
  const role = chat.roleOf(state.me.id);
  $("add-member-btn").hidden = !(chat.kind === "group" && (role === "owner" || role === "admin"));
  renderChannelControls(chat);
  renderTyping();
}

/**
 * A channel's header buttons and composer: staff post (and get the invite link of a private
 * channel), readers see Subscribe/Unsubscribe and a hint where the composer would be.
 */
function renderChannelControls(chat) {
  const channel = chat.kind === "channel";
  const info = channel ? actions.channelInfo?.(chat.id) : null;
  const staff = channel && isStaff(chat);
  const subscribe = $("subscribe-btn");
  subscribe.hidden = !channel || staff || !info;
  if (info) {
    subscribe.textContent = info.subscribed ? "Unsubscribe" : "Subscribe";
    subscribe.classList.toggle("primary", !info.subscribed);
    subscribe.setAttribute("aria-pressed", String(Boolean(info.subscribed)));
  }
  // A public channel is found by its handle; a private one is joined by its invite link.
  $("invite-btn").hidden = !(staff && info && !info.public && info.invite_token);
  const readOnly = channel && !staff;
  $("composer").hidden = readOnly;
  const hint = $("channel-hint");
  hint.hidden = !readOnly;
  if (readOnly) {
    hint.textContent =
      info && !info.subscribed
        ? "Only the channel's admins post here. Subscribe to like posts and get them in your feed."
        : "Only the channel's admins post here.";
  }
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
  else if (chat.kind === "channel") status.textContent = chat.messages.size ? "Beginning of the channel" : "No posts yet.";
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
  const post = chat.kind === "channel";
  const item = el(
    "li",
    // A channel's posts come from the channel, whoever of its staff wrote them.
    { className: `msg ${post ? "post" : mine ? "mine" : "theirs"}` },
    !mine && chat.kind === "group" ? el("span", { className: "sender", text: usernameOf(message.sender_id) }) : null,
    el("span", { className: "forwarded", hidden: true }),
    el("button", { type: "button", className: "reply-quote", hidden: true }),
    el("div", { className: "attachments", hidden: true }),
    el("p", { className: "text" }),
    el("ul", { className: "reactions", "aria-label": "Reactions", hidden: true }),
    el(
      "span",
      { className: "meta" },
      el("button", { type: "button", className: "edited link", text: "edited", hidden: true, title: "Show the edit history" }),
      el("time", { datetime: message.created_at, text: formatTime(message.created_at) }),
    ),
  );
  if (mine) item.querySelector(".meta").append(el("span", { className: "tick" }));
  if (post && message.seq !== undefined) {
    const seq = message.seq;
    item.querySelector(".meta").prepend(
      likeButton({ onclick: () => actions.like(chat, seq) }),
    );
  }
  if (message.seq !== undefined) {
    const seq = message.seq;
    const current = () => chat.messages.get(seq);
    const openMenu = (anchor, point) => {
      const held = current();
      if (held && !held.deleted) actions.menu(chat, held, anchor, point);
    };
    const menuButton = el("button", {
      type: "button",
      className: "msg-menu-btn",
      "aria-label": "Message actions",
      "aria-haspopup": "menu",
      text: "⋯",
      onclick: (event) => openMenu(event.currentTarget),
    });
    item.append(menuButton);
    // A right click, or a long press on a touch screen (which browsers report as contextmenu).
    item.addEventListener("contextmenu", (event) => {
      if (event.target.closest("a, .reactions")) return;
      event.preventDefault();
      openMenu(menuButton, { x: event.clientX, y: event.clientY });
    });
    // Browsers that report no contextmenu for a long press (iOS Safari): time it ourselves.
    let press = null;
    let pressAt = null;
    item.addEventListener("pointerdown", (event) => {
      if (event.pointerType !== "touch" || event.target.closest("button")) return;
      pressAt = { x: event.clientX, y: event.clientY };
      clearTimeout(press);
      press = setTimeout(() => openMenu(menuButton, pressAt), 550);
    });
    const cancelPress = () => clearTimeout(press);
    for (const type of ["pointerup", "pointercancel", "contextmenu"]) item.addEventListener(type, cancelPress);
    item.addEventListener("pointermove", (event) => {
      if (pressAt && Math.hypot(event.clientX - pressAt.x, event.clientY - pressAt.y) > 10) cancelPress();
    });
    item.querySelector(".reply-quote").addEventListener("click", () => {
      const replyTo = current()?.reply_to;
      if (replyTo) actions.jump(chat, replyTo.seq);
    });
    item.querySelector(".edited").addEventListener("click", () => {
      const held = current();
      if (held) actions.edits(chat, held);
    });
  }
  return item;
}

function updateMessage(chat, item, message) {
  if (message.seq !== undefined) item.dataset.seq = message.seq;
  else item.dataset.clientId = message.client_id;
  if (message.kind === "system") {
    const text = item.querySelector(".system-text");
    if (text.textContent !== bidiSafe(message.text)) text.textContent = bidiSafe(message.text);
    return;
  }
  // The quoted message as it is now, if we hold it (its edits and deletion show in the quote).
  const replySeq = message.reply_to?.seq ?? message.reply_to_seq;
  const quoted = replySeq ? (chat.messages.get(replySeq) ?? message.reply_to ?? null) : null;
  if (item.shownMessage !== message || item.shownQuote !== quoted) {
    item.shownMessage = message;
    item.shownQuote = quoted;
    renderContent(chat, item, message, quoted);
  }
  renderTick(chat, item, message);
}

/** The parts of a message that change: text or tombstone, quote, forward header, reactions, "edited". */
function renderContent(chat, item, message, quoted) {
  item.classList.toggle("deleted", Boolean(message.deleted));
  item.classList.toggle("pinned", Boolean(message.pinned));
  const text = item.querySelector(".text");
  text.textContent = message.deleted ? "Message deleted" : bidiSafe(message.text);
  // A message with files may have no text (or a caption under them).
  text.hidden = !message.deleted && !text.textContent;
  renderAttachments(item.querySelector(".attachments"), message.deleted ? [] : (message.attachments ?? []));

  const forwarded = item.querySelector(".forwarded");
  const origin = message.forwarded_from;
  forwarded.hidden = !origin;
  if (origin) forwarded.replaceChildren("Forwarded from ", bdi(origin.sender_username ?? usernameOf(origin.sender_id)));

  const quote = item.querySelector(".reply-quote");
  quote.hidden = !quoted;
  if (quoted) {
    const who = quoted.sender_id === null || quoted.sender_id === undefined ? "System" : usernameOf(quoted.sender_id);
    const gist = messageGist(quoted).slice(0, 100);
    quote.replaceChildren(el("span", { className: "quote-sender", text: who }), el("span", { className: "quote-text", text: gist }));
    quote.classList.toggle("deleted", Boolean(quoted.deleted));
    quote.setAttribute("aria-label", `Reply to ${bidiSafe(who)}: ${gist}. Show the message.`);
  }

  const edited = item.querySelector(".edited");
  edited.hidden = !message.edited_at || message.deleted;

  const like = item.querySelector(".like");
  if (like) {
    like.hidden = Boolean(message.deleted);
    const heart = likeOf(message);
    showLike(like, heart.count, heart.me);
  }

  const reactions = item.querySelector(".reactions");
  // In a channel the ❤️ is the like button; the other reactions show as chips.
  const list = (message.deleted ? [] : (message.reactions ?? [])).filter((r) => !like || !isLike(r.emoji));
  reactions.hidden = list.length === 0;
  reactions.replaceChildren(
    ...list.map((reaction) =>
      el(
        "li",
        {},
        el(
          "button",
          {
            type: "button",
            className: `reaction${reaction.me ? " me" : ""}`,
            "aria-pressed": String(Boolean(reaction.me)),
            "aria-label": `${reaction.emoji} ${reaction.count}${reaction.me ? ", you reacted" : ""}`,
            onclick: () => actions.react(chat, message.seq, reaction.emoji),
          },
          el("span", { className: "reaction-emoji", text: reaction.emoji }),
          el("span", { className: "reaction-count", text: String(reaction.count) }),
        ),
      ),
    ),
  );
  const menuButton = item.querySelector(".msg-menu-btn");
  if (menuButton) menuButton.hidden = Boolean(message.deleted);
}

function renderTick(chat, item, message) {
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

/** Scrolls a rendered message into view and highlights it for a moment. */
export function flashMessage(seq) {
  const item = renderedMessages.get(`s${seq}`);
  if (!item) return;
  item.scrollIntoView({ block: "center", behavior: "smooth" });
  item.classList.remove("flash");
  void item.offsetWidth; // restart the animation
  item.classList.add("flash");
  item.querySelector(".msg-menu-btn, .system-text")?.focus?.({ preventScroll: true });
}

// --- pinned bar and composer context ------------------------------------------------------------

/** The bar under the header: one pinned message at a time (newest first), a click moves on. */
export function renderPinned() {
  const chat = openChat();
  const bar = $("pinned-bar");
  const seqs = chat?.pinned_seqs ?? [];
  bar.hidden = seqs.length === 0;
  if (!chat || !seqs.length) return;
  const index = Math.min(state.pinIndex.get(chat.id) ?? 0, seqs.length - 1);
  const seq = seqs[index];
  const message = chat.message(seq);
  if (!message) actions.needMessage(chat, seq);
  $("pinned-label").textContent = seqs.length > 1 ? `Pinned message ${index + 1} of ${seqs.length}` : "Pinned message";
  $("pinned-text").textContent = message ? messageGist(message) : "…";
  $("pinned-open").setAttribute("aria-label", `${$("pinned-label").textContent}: ${$("pinned-text").textContent}. Show it.`);
  $("pinned-open").onclick = () => actions.pinned(chat);
  const unpin = $("pinned-unpin");
  unpin.hidden = !(message && canChange(chat, message).pin);
  unpin.onclick = () => actions.unpin(chat, seq);
}

/** The bar over the composer while it answers ("Reply to …") or edits ("Edit message") one. */
export function renderComposerContext() {
  const chat = openChat();
  const mode = chat && state.composing?.chatId === chat.id ? state.composing : null;
  const bar = $("composer-context");
  bar.hidden = !mode;
  if (!mode) {
    $("composer").dataset.mode = "send";
    return;
  }
  const message = chat.message(mode.seq);
  $("composer").dataset.mode = mode.kind;
  $("composer-context-label").replaceChildren(
    ...(mode.kind === "edit" ? ["Edit message"] : ["Reply to ", bdi(message ? usernameOf(message.sender_id) : "…")]),
  );
  $("composer-context-text").textContent = message ? messageGist(message).slice(0, 100) : "";
}

// --- likes (channel posts: the ❤️ reaction, PROTOCOL.md §10 "Channels") ---------------------------

export const LIKE = "❤️";

/** Whether a reaction's emoji is the like (the server stores "❤" as "❤️"). */
export function isLike(emoji) {
  return emoji.replace(/\uFE0F/g, "") === "❤";
}

/** A message's like: {count, me}. */
export function likeOf(message) {
  const heart = message.reactions?.find((reaction) => isLike(reaction.emoji));
  return { count: heart?.count ?? 0, me: Boolean(heart?.me) };
}

/** The ❤ toggle of a post (in a channel, and in the feed). */
export function likeButton({ onclick }) {
  return el(
    "button",
    { type: "button", className: "like", "aria-pressed": "false", onclick },
    el("span", { className: "like-heart", "aria-hidden": "true", text: "❤" }),
    el("span", { className: "like-count" }),
  );
}

/** Shows `count` likes, and whether they include the reader's, on a like button. */
export function showLike(button, count, liked) {
  button.classList.toggle("liked", liked);
  button.setAttribute("aria-pressed", String(liked));
  button.setAttribute("aria-label", `Like, ${count} ${count === 1 ? "like" : "likes"}`);
  button.title = liked ? "Take your like back" : "Like";
  button.querySelector(".like-count").textContent = String(count);
}
