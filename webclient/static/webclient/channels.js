// Channels (PROTOCOL.md §2 "Channel", §10 "Channels"): the sidebar's sections (Chats, Channels,
// Feed), the Channels section (the channels I follow or run, a debounced search over public
// ones with Subscribe/Unsubscribe), the dialogs to create a channel, join a private one by its
// invite link and show that link, and the channel objects the rest of the client reads
// (title, handle, subscribers, whether I subscribe, my role).

import { ApiError } from "./api.js";
import { $, el, showToast } from "./dom.js";
import { newClientId } from "./store.js";
import { channelSummary } from "./view.js";

const SEARCH_DELAY_MS = 250;
const SECTIONS = ["chats", "channels", "feed"];
const FIELD_NAMES = { title: "Channel name", handle: "Handle", about: "About", invite: "Invite link" };

/** `#join-<id>-<token>`: the invite link of a private channel, as the web client writes it. */
export function inviteLink(channel) {
  return `${location.origin}${location.pathname}#join-${channel.id}-${channel.invite_token}`;
}

/** {id, token} from an invite link (or its `#join-…` part), or null. */
export function parseInvite(text) {
  const match = /#?join-(\d+)-([A-Za-z0-9_-]+)\s*$/.exec(String(text ?? "").trim());
  return match ? { id: Number(match[1]), token: match[2] } : null;
}

/** A refused write as one readable sentence, naming the fields it is about. */
function explain(error) {
  if (!(error instanceof ApiError)) return String(error?.message ?? error);
  if (error.code === "handle_taken") return "That handle is taken. Choose another one.";
  if (error.code === "rate_limited") return `Too many changes. Try again in ${Math.ceil(error.retryAfter ?? 1)} s.`;
  const detail = error.detail;
  if (detail && typeof detail === "object" && !Array.isArray(detail)) {
    return Object.entries(detail)
      .map(([field, messages]) => {
        const text = Array.isArray(messages) ? messages.join(" ") : String(messages);
        return field === "non_field_errors" ? text : `${FIELD_NAMES[field] ?? field}: ${text}`;
      })
      .join(" ");
  }
  return error.message;
}

/**
 * Wires the Channels section. `open(channelId)` opens a channel, `section(name)` is told when
 * the user picks a section (the app routes: Feed opens the feed), `changed(channel)` when a
 * channel object changed (subscribed, counted, fetched), `subscriptionChanged(channel)` when I
 * subscribed or unsubscribed.
 */
export function setupChannels({ session, open, section, changed, subscriptionChanged }) {
  const channels = new Map(); // id -> the channel object, as last read
  let mine = []; // ids of the channels I subscribe to or run, most recent activity first
  let results = null; // ids of the search's results, or null when no search is shown
  const busy = new Set(); // ids with a subscription change on its way

  function remember(channel) {
    const held = channels.get(channel.id);
    // An object without the reader's fields (a subscription answer) updates what it carries.
    const merged = held ? { ...held, ...channel } : channel;
    channels.set(channel.id, merged);
    return merged;
  }

  const info = (id) => channels.get(id) ?? null;

  async function load(key) {
    const channel = remember(await session.request("GET", `/api/channels/${encodeURIComponent(key)}`));
    changed(channel);
    renderLists();
    return channel;
  }

  async function refreshMine() {
    const list = await session.request("GET", "/api/channels");
    mine = list.map((channel) => remember(channel).id);
    renderLists();
  }

  /** Subscribes (or unsubscribes) me; `invite` for a private channel. Resolves with the channel. */
  async function setSubscribed(id, subscribed, invite = null) {
    if (busy.has(id)) return info(id);
    busy.add(id);
    renderLists();
    try {
      const answer = await session.request(
        subscribed ? "POST" : "DELETE",
        `/api/channels/${id}/subscription`,
        subscribed ? (invite ? { invite } : {}) : undefined,
        { headers: { "Idempotency-Key": newClientId() } },
      );
      const channel = remember({ id, subscribed: answer.subscribed, subscribers_count: answer.subscribers_count });
      changed(channel);
      if (answer.changed) subscriptionChanged(channel);
      refreshMine().catch(() => {});
      return channel;
    } finally {
      busy.delete(id);
      renderLists();
    }
  }

  function toggle(id) {
    const channel = info(id);
    if (!channel) return Promise.resolve(null);
    return setSubscribed(id, !channel.subscribed).catch((error) => {
      showToast(`Could not ${channel.subscribed ? "unsubscribe" : "subscribe"}: ${explain(error)}`);
      return null;
    });
  }

  // --- lists ------------------------------------------------------------------------------------

  function channelItem(channel) {
    const staff = channel.role === "owner" || channel.role === "admin";
    const label = staff ? (channel.role === "owner" ? "Yours" : "Admin") : null;
    return el(
      "li",
      { className: "channel-item", dataset: { channelId: channel.id } },
      el(
        "button",
        {
          type: "button",
          className: "channel-open",
          "aria-label": `${channel.title}, ${channelSummary(channel)}`,
          onclick: () => open(channel.id),
        },
        el("span", { className: "channel-title", text: channel.title }),
        el("span", { className: "channel-meta", text: channelSummary(channel) }),
      ),
      staff
        ? el("span", { className: "channel-role", text: label })
        : el("button", {
            type: "button",
            className: `channel-subscribe${channel.subscribed ? "" : " primary"}`,
            "aria-pressed": String(Boolean(channel.subscribed)),
            "aria-label": `${channel.subscribed ? "Unsubscribe from" : "Subscribe to"} ${channel.title}`,
            disabled: busy.has(channel.id),
            text: channel.subscribed ? "Unsubscribe" : "Subscribe",
            onclick: () => toggle(channel.id),
          }),
    );
  }

  function renderList(list, ids) {
    // Rebuilt whole: a few dozen rows; focus goes back to the same control of the same row.
    const focused = document.activeElement;
    const row = list.contains(focused) ? focused.closest("li")?.dataset.channelId : null;
    const control = focused?.className?.split(" ")[0];
    list.replaceChildren(...ids.map((id) => channelItem(info(id))));
    if (row) list.querySelector(`li[data-channel-id="${row}"] .${control}`)?.focus();
  }

  function renderLists() {
    renderList($("my-channels"), mine);
    $("my-channels-empty").hidden = mine.length > 0;
    $("channel-results-section").hidden = results === null;
    if (results !== null) renderList($("channel-results"), results);
  }

  // Search: debounced; only the latest query's answer is shown.
  let searchTimer = null;
  let generation = 0;
  async function search() {
    const query = $("channel-search").value.trim();
    const ticket = ++generation;
    if (!query) {
      results = null;
      $("channel-results-status").textContent = "";
      renderLists();
      return;
    }
    try {
      const found = await session.request("GET", `/api/channels?search=${encodeURIComponent(query)}`);
      if (ticket !== generation) return;
      results = found.map((channel) => remember(channel).id);
      $("channel-results-status").textContent = found.length ? "" : "No public channels found.";
    } catch (error) {
      if (ticket !== generation) return;
      results = [];
      $("channel-results-status").textContent = explain(error);
    }
    renderLists();
  }
  $("channel-search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(search, SEARCH_DELAY_MS);
  });
  $("channel-search").addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();
    clearTimeout(searchTimer);
    search();
  });

  // --- sections ---------------------------------------------------------------------------------

  const tabs = SECTIONS.map((name) => $(`tab-${name}`));
  let current = "chats";

  /** Shows a section's panel in the sidebar (and selects its tab). */
  function showSection(name, { focus = false } = {}) {
    current = name;
    for (const tab of tabs) {
      const selected = tab.dataset.section === name;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
      $(tab.getAttribute("aria-controls")).hidden = !selected;
      if (selected && focus) tab.focus();
    }
    if (name === "channels") refreshMine().catch(() => {});
  }

  for (const tab of tabs) {
    tab.addEventListener("click", () => {
      showSection(tab.dataset.section);
      section(tab.dataset.section);
    });
    // Arrow keys move between the tabs (WAI-ARIA tabs pattern, manual activation).
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[event.key];
      const index = tabs.indexOf(tab);
      let next = null;
      if (step) next = tabs[(index + step + tabs.length) % tabs.length];
      else if (event.key === "Home") next = tabs[0];
      else if (event.key === "End") next = tabs.at(-1);
      if (!next) return;
      event.preventDefault();
      for (const other of tabs) other.tabIndex = other === next ? 0 : -1;
      next.focus();
    });
  }
  $("open-feed-btn").addEventListener("click", () => section("feed"));

  // --- dialogs ----------------------------------------------------------------------------------

  const form = $("channel-form");
  const fields = { title: $("channel-title"), handle: $("channel-handle"), about: $("channel-about") };
  $("new-channel-btn").addEventListener("click", () => {
    form.reset();
    $("channel-error").textContent = "";
    for (const input of Object.values(fields)) input.removeAttribute("aria-invalid");
    $("channel-dialog").showModal();
    fields.title.focus();
  });
  $("channel-dialog").querySelector(".cancel").addEventListener("click", () => $("channel-dialog").close());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const input of Object.values(fields)) input.removeAttribute("aria-invalid");
    const title = fields.title.value.trim();
    const handle = fields.handle.value.trim().replace(/^@/, "");
    const about = fields.about.value.trim();
    if (!title) {
      $("channel-error").textContent = "Give the channel a name.";
      fields.title.setAttribute("aria-invalid", "true");
      fields.title.focus();
      return;
    }
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    $("channel-error").textContent = "";
    try {
      const body = { title, ...(handle ? { handle } : {}), ...(about ? { about } : {}) };
      const channel = remember(
        await session.request("POST", "/api/channels", body, { headers: { "Idempotency-Key": newClientId() } }),
      );
      $("channel-dialog").close();
      changed(channel);
      refreshMine().catch(() => {});
      open(channel.id);
    } catch (error) {
      $("channel-error").textContent = explain(error);
      const field =
        error.code === "handle_taken"
          ? "handle"
          : Object.keys((typeof error.detail === "object" && error.detail) || {}).find((name) => fields[name]);
      if (field) {
        fields[field].setAttribute("aria-invalid", "true");
        fields[field].focus();
      }
    } finally {
      submit.disabled = false;
    }
  });

  /** Subscribes with an invite, then opens the channel; errors shown in the join dialog. */
  async function join(invite) {
    const channel = await setSubscribed(invite.id, true, invite.token);
    await load(invite.id).catch(() => channel);
    open(invite.id);
  }

  $("join-invite-btn").addEventListener("click", () => openJoin(""));
  function openJoin(text) {
    $("join-link").value = text;
    $("join-error").textContent = "";
    $("join-dialog").showModal();
    $("join-link").focus();
  }
  $("join-dialog").querySelector(".cancel").addEventListener("click", () => $("join-dialog").close());
  $("join-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const invite = parseInvite($("join-link").value);
    if (!invite) {
      $("join-error").textContent = "Paste the whole invite link (it ends in #join-…).";
      $("join-link").focus();
      return;
    }
    const submit = event.currentTarget.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      await join(invite);
      $("join-dialog").close();
    } catch (error) {
      $("join-error").textContent =
        error.status === 404 ? "This invite link is not valid (any more)." : explain(error);
    } finally {
      submit.disabled = false;
    }
  });

  /** The invite link of a channel I run, in a dialog with a Copy button. */
  function showInvite(channelId) {
    const channel = info(channelId);
    if (!channel?.invite_token) return;
    $("invite-link").value = inviteLink(channel);
    $("invite-status").textContent = "";
    $("invite-dialog").showModal();
    $("invite-link").select();
  }
  $("invite-copy").addEventListener("click", async () => {
    const input = $("invite-link");
    try {
      await navigator.clipboard.writeText(input.value);
      $("invite-status").textContent = "Copied.";
    } catch {
      input.select();
      $("invite-status").textContent = "Select the link and copy it (Ctrl+C).";
    }
  });

  function reset() {
    channels.clear();
    mine = [];
    results = null;
    $("channel-search").value = "";
    $("my-channels").replaceChildren();
    $("channel-results").replaceChildren();
    showSection("chats");
  }

  return {
    info,
    remember,
    load,
    refreshMine,
    toggle,
    showSection,
    section: () => current,
    showInvite,
    /** Shows the join dialog for an invite link that was opened (`#join-…`). */
    offerJoin: (invite) => openJoin(`${location.origin}${location.pathname}#join-${invite.id}-${invite.token}`),
    subscribed: (id) => Boolean(info(id)?.subscribed),
    reset,
  };
}
