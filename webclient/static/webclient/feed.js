// The feed (PROTOCOL.md §10 "Feed"): the posts of every channel I subscribe to, newest first,
// page by page (`next_cursor`) as the reader scrolls down (an IntersectionObserver on a sentinel
// under the list), and a "New posts" pill when a channel I follow posts (`channel.post`, or a
// `message.new` of a channel whose events this socket gets), which reloads the first page.
// The feed is eventually consistent (its worker adds a post shortly after it is sent), so the
// reload asks again a few times until the announced post is in it.

import { $, announce, el, formatTime } from "./dom.js";
import { renderAttachments } from "./media.js";
import { isLike, likeButton, showLike } from "./view.js";

const PAGE = 20;
const RELOAD_RETRIES_MS = [300, 600, 1200, 2400, 4800];

/**
 * `open(channelId)` opens a channel; `like(post)` toggles the reader's like of a feed post
 * (resolving with the like answer or null); `subscribed(channelId)` says whether I subscribe.
 */
export function setupFeed({ session, open, like, subscribed }) {
  let posts = new Map(); // id -> post, as the feed answered it (and live changes since)
  let order = []; // post ids, newest first
  let nextCursor = null;
  let loaded = false;
  let loading = null; // the running page request
  let visible = false;
  let announced = null; // {channelId, seq} of the newest announced post not in the feed yet
  let generation = 0; // a reload makes older page answers stale
  const rendered = new Map(); // post id -> li

  const scroller = $("feed");
  const list = $("feed-list");
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) loadMore();
  }, { root: scroller, rootMargin: "0px 0px 300px 0px" });

  function status(text) {
    $("feed-status").textContent = text;
  }

  function renderPill() {
    const pill = $("new-posts");
    const show = Boolean(visible && loaded && announced);
    if (show && pill.hidden) announce("New posts in your feed");
    pill.hidden = !show;
  }

  /** Whether the feed holds the post announced as (channelId, seq), or a later one of it. */
  function holds({ channelId, seq }) {
    return order.some((id) => {
      const post = posts.get(id);
      return post.channel.id === channelId && post.seq >= seq;
    });
  }

  async function fetchPage(cursor) {
    const query = cursor ? `cursor=${cursor}&limit=${PAGE}` : `limit=${PAGE}`;
    return session.request("GET", `/api/feed?${query}`);
  }

  /** Loads the newest page again (replacing what is held) and scrolls to the top. */
  async function reload({ waitFor = null } = {}) {
    const ticket = ++generation;
    loading = null;
    status("Loading…");
    let page;
    try {
      page = await fetchPage(null);
      for (const delay of waitFor ? RELOAD_RETRIES_MS : []) {
        if (ticket !== generation || page.results.some((post) => post.channel.id === waitFor.channelId && post.seq >= waitFor.seq)) break;
        await new Promise((resolve) => setTimeout(resolve, delay));
        page = await fetchPage(null);
      }
    } catch (error) {
      if (ticket === generation) status(`Could not load the feed: ${error.message}`);
      return;
    }
    if (ticket !== generation) return;
    posts = new Map(page.results.map((post) => [post.id, post]));
    order = page.results.map((post) => post.id);
    nextCursor = page.next_cursor;
    loaded = true;
    if (announced && holds(announced)) announced = null;
    render();
    scroller.scrollTop = 0;
    renderPill();
    rearm();
  }

  /** The next (older) page, while there is one. */
  function loadMore() {
    if (!loaded || loading || nextCursor === null) return;
    const ticket = generation;
    status("Loading older posts…");
    loading = fetchPage(nextCursor)
      .then((page) => {
        if (ticket !== generation) return;
        for (const post of page.results) {
          if (posts.has(post.id)) continue;
          posts.set(post.id, post);
          order.push(post.id);
        }
        nextCursor = page.next_cursor;
      })
      .catch((error) => {
        if (ticket === generation) status(`Could not load older posts: ${error.message}`);
        throw error;
      })
      .then(() => {
        if (ticket !== generation) return;
        loading = null;
        render();
        rearm();
      })
      .catch(() => {
        if (ticket === generation) loading = null; // a later scroll tries again
      });
  }

  /** Observing again reports the sentinel's current state: a short page loads the next at once. */
  function rearm() {
    observer.unobserve($("feed-sentinel"));
    if (visible && nextCursor !== null) observer.observe($("feed-sentinel"));
  }

  // --- rendering --------------------------------------------------------------------------------

  function render() {
    const keep = new Set(order);
    for (const [id, item] of rendered) {
      if (!keep.has(id)) {
        item.remove();
        rendered.delete(id);
      }
    }
    let previous = null;
    for (const id of order) {
      let item = rendered.get(id);
      if (!item) {
        item = buildPost(posts.get(id));
        rendered.set(id, item);
      }
      updatePost(item, posts.get(id));
      const wanted = previous ? previous.nextSibling : list.firstChild;
      if (wanted !== item) list.insertBefore(item, wanted);
      previous = item;
    }
    if (loading) return;
    if (!order.length) status("No posts yet. Subscribe to channels in the Channels section and their posts show here.");
    else status(nextCursor === null ? "You are all caught up." : "");
  }

  function buildPost(post) {
    const titleId = `feed-post-${post.id}`;
    return el(
      "li",
      { className: "feed-post", dataset: { postId: post.id, channelId: post.channel.id, seq: post.seq } },
      el(
        "article",
        { "aria-labelledby": titleId },
        el(
          "header",
          { className: "feed-post-header" },
          el("button", {
            type: "button",
            id: titleId,
            className: "feed-channel link",
            text: post.channel.title,
            title: "Open the channel",
            onclick: () => open(post.channel.id),
          }),
          el("time", { datetime: post.created_at, text: formatTime(post.created_at) }),
        ),
        el("div", { className: "attachments", hidden: true }),
        el("p", { className: "text" }),
        el(
          "footer",
          { className: "feed-post-footer" },
          el("span", { className: "edited", text: "edited", hidden: true }),
          likeButton({ onclick: () => toggleLike(post.id) }),
        ),
      ),
    );
  }

  function updatePost(item, post) {
    if (item.shownPost === post) return;
    item.shownPost = post;
    const text = item.querySelector(".text");
    text.textContent = post.text ?? "";
    text.hidden = !text.textContent;
    renderAttachments(item.querySelector(".attachments"), post.attachments ?? []);
    item.querySelector(".edited").hidden = !post.edited_at;
    showLike(item.querySelector(".like"), post.likes_count, post.liked_by_me);
  }

  async function toggleLike(postId) {
    const post = posts.get(postId);
    if (!post) return;
    const answer = await like(post);
    if (answer) setLike(postId, answer.likes_count, answer.liked_by_me);
  }

  /** A post's like count (and mine) changed: from a like answer. */
  function setLike(postId, count, liked) {
    const post = posts.get(postId);
    if (!post) return;
    posts.set(postId, { ...post, likes_count: count, liked_by_me: liked });
    if (visible) render();
  }

  /** The held post of a channel's seq, if any. */
  function find(channelId, seq) {
    for (const id of order) {
      const post = posts.get(id);
      if (post.channel.id === channelId && post.seq === seq) return post;
    }
    return null;
  }

  // --- live changes -----------------------------------------------------------------------------

  function announce(channelId, seq) {
    if (!subscribed(channelId)) return;
    if (loaded && holds({ channelId, seq })) return;
    if (!announced || announced.channelId !== channelId || seq > announced.seq) announced = { channelId, seq };
    renderPill();
  }

  const live = {
    /** `channel.post`: a channel I subscribe to posted (the first post of a burst). */
    channelPost(frame) {
      announce(frame.chat_id, frame.last_seq);
    },
    /** `message.new` of a channel this socket gets events of (I run it, or watch it). */
    message(message) {
      if (message.kind === "text") announce(message.chat_id, message.seq);
    },
    /** `message.reactions`: the post's likes, and mine when I was the one. */
    reactions(frame, myId) {
      const post = find(frame.chat_id, frame.seq);
      if (!post) return;
      const heart = frame.reactions.find((reaction) => isLike(reaction.emoji));
      const mine = frame.user_id === myId && isLike(frame.emoji) ? frame.added : post.liked_by_me;
      setLike(post.id, heart?.count ?? 0, mine);
    },
    edited(message) {
      const post = find(message.chat_id, message.seq);
      if (!post || message.version < post.version) return;
      posts.set(post.id, { ...post, text: message.text, edited_at: message.edited_at, attachments: message.attachments, version: message.version });
      if (visible) render();
    },
    deleted(chatId, seqs) {
      const gone = new Set(order.filter((id) => posts.get(id).channel.id === chatId && seqs.includes(posts.get(id).seq)));
      if (!gone.size) return;
      order = order.filter((id) => !gone.has(id));
      for (const id of gone) posts.delete(id);
      if (visible) render();
    },
  };

  $("new-posts").addEventListener("click", () => {
    const waitFor = announced;
    $("new-posts").hidden = true;
    reload({ waitFor }).then(() => scroller.focus({ preventScroll: true }));
  });

  return {
    ...live,
    setLike,
    /** The feed view is shown: load it the first time, and when new posts were announced. */
    show() {
      visible = true;
      if (!loaded || announced) reload({ waitFor: announced });
      else {
        render();
        rearm();
      }
      renderPill();
    },
    hide() {
      visible = false;
      observer.unobserve($("feed-sentinel"));
      renderPill();
    },
    /** After a reconnect (announcements may have been missed) or a subscription change: reload if shown. */
    resync() {
      if (visible) reload();
      else loaded = false;
    },
    reset() {
      generation += 1;
      posts = new Map();
      order = [];
      nextCursor = null;
      loaded = false;
      loading = null;
      visible = false;
      announced = null;
      rendered.clear();
      list.replaceChildren();
      status("");
      observer.disconnect();
      renderPill();
    },
  };
}
