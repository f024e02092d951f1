// Client-side state of the chats, without any DOM. The rules come from docs/PROTOCOL.md §3, §4
// and §9: messages are identified and merged by (chat_id, seq); counters from the server are
// absolute and only ever move forward, so merging keeps the maximum; a chat whose messages were
// loaded keeps a gap-free window [low, high] of them.
//
// Messages change (edits, deletes, reactions, pins), so a loaded chat also holds `version`: every
// change up to it is applied to the held messages. A change event with version K+1 is applied,
// one at or below K is ignored, and a jump (or a hole in seq) is repaired from
// /changes?after_version=K (`behind`). Each held message keeps its own `version` too, so a state
// fetched later (an older history page, a /changes page) is never overwritten by an event that
// was already on its way.

export class Chat {
  constructor(raw, myId) {
    this.myId = myId;
    this.id = raw.id;
    this.kind = raw.kind;
    this.created_at = raw.created_at;
    this.last_seq = 0;
    this.last_read_seq = 0;
    this.read_all_seq = 0;
    this.last_message = null;
    this.messages = new Map(); // seq -> message, only once `loaded`
    this.loaded = false;
    this.low = 1; // lowest seq held
    this.high = 0; // highest seq such that low..high are all held
    this.hasOlder = false;
    this.pending = new Map(); // client_id -> unsent or unacknowledged local message
    this.typing = new Map(); // user_id -> time (ms) the indicator ends
    this.readRequested = 0; // up_to_seq last asked for on the current socket
    this.version = 0; // every change up to this one is applied to `messages` (once `loaded`)
    this.serverVersion = 0; // the highest version the server has told of
    this.pinned_seqs = [];
    this.pinsVersion = -1; // the version `pinned_seqs` is from
    this.loose = new Map(); // seq -> a message outside the held window (a pin), or null while fetched
    this.update(raw);
  }

  /** Applies a chat object from the server (REST or chat.created); counters never go back. */
  update(raw) {
    if (raw.title !== undefined) this.title = raw.title;
    if (raw.members !== undefined) this.members = raw.members;
    if (raw.members_count !== undefined) this.members_count = raw.members_count;
    if (raw.created_by !== undefined) this.created_by = raw.created_by;
    this.last_seq = Math.max(this.last_seq, raw.last_seq ?? 0);
    this.last_read_seq = Math.max(this.last_read_seq, raw.last_read_seq ?? 0);
    this.read_all_seq = Math.max(this.read_all_seq, raw.read_all_seq ?? 0);
    if (raw.last_message) this.noteLastMessage(raw.last_message);
    if (raw.version !== undefined) {
      this.serverVersion = Math.max(this.serverVersion, raw.version);
      if (raw.pinned_seqs !== undefined) this.setPins(raw.pinned_seqs, raw.version);
    }
  }

  noteLastMessage(message) {
    const last = this.last_message;
    if (!last || message.seq > last.seq || (message.seq === last.seq && newerOrSame(message, last))) {
      this.last_message = message;
    }
    this.last_seq = Math.max(this.last_seq, message.seq);
  }

  /** The chat's pins as of `version` (newest first); an older list never replaces a newer one. */
  setPins(seqs, version) {
    if (version < this.pinsVersion) return;
    this.pinned_seqs = [...seqs];
    this.pinsVersion = version;
  }

  /** Whether changes are known to exist past the applied `version` (or messages past `high`). */
  get behind() {
    return this.loaded && (this.serverVersion > this.version || this.last_seq > this.high);
  }

  /**
   * Where a change event with `version` stands: "apply" (it is the next one; `version` has
   * moved to it), "old" (already applied), "gap" (changes before it were missed: catch up first)
   * or "unloaded" (no messages are held; only the chat list's preview cares).
   */
  admit(version) {
    this.serverVersion = Math.max(this.serverVersion, version);
    if (!this.loaded) return "unloaded";
    if (version <= this.version) return "old";
    if (version !== this.version + 1) return "gap";
    this.version = version;
    return "apply";
  }

  /** A held message by seq (also the chat list's last message when nothing is loaded). */
  message(seq) {
    return (
      this.messages.get(seq) ?? this.loose.get(seq) ?? (this.last_message?.seq === seq ? this.last_message : null)
    );
  }

  /** Keeps a message fetched on its own (a pin older than the held window). */
  keepLoose(message) {
    const held = this.loose.get(message.seq);
    if (!held || newerOrSame(message, held)) this.loose.set(message.seq, message);
  }

  /**
   * Replaces held messages by a changed copy built by `change(held)`, for the seqs given, unless
   * the held copy is already at `version` or later. The chat list's last message follows too.
   */
  patch(seqs, version, change) {
    for (const seq of seqs) {
      const held = this.messages.get(seq);
      if (held && (held.version ?? 0) < version) this.messages.set(seq, { ...change(held), version });
      const loose = this.loose.get(seq);
      if (loose && (loose.version ?? 0) < version) this.loose.set(seq, { ...change(loose), version });
      const last = this.last_message;
      if (last?.seq === seq && (last.version ?? 0) < version) this.last_message = { ...change(last), version };
    }
  }

  /** message.deleted: the seqs are tombstones now and no longer pinned. */
  applyDeleted(seqs, version) {
    this.patch(seqs, version, tombstone);
    if (version > this.pinsVersion) {
      this.setPins(
        this.pinned_seqs.filter((seq) => !seqs.includes(seq)),
        version,
      );
    }
  }

  /** message.reactions: the new counts; our own `me` flags are kept, and set for our change. */
  applyReactions(frame, myId) {
    this.patch([frame.seq], frame.version, (held) => ({
      ...held,
      reactions: frame.reactions.map(({ emoji, count }) => ({
        emoji,
        count,
        me: frame.user_id === myId && emoji === frame.emoji ? frame.added : mineFor(held, emoji),
      })),
    }));
  }

  /** chat.pins: the new list; the `pinned` flags of held messages follow it. */
  applyPins(seqs, version) {
    const before = new Set(this.pinned_seqs);
    const after = new Set(seqs);
    const touched = [...new Set([...before, ...after])].filter((seq) => before.has(seq) !== after.has(seq));
    this.patch(touched, version, (held) => ({ ...held, pinned: after.has(held.seq) }));
    this.setPins(seqs, version);
  }

  get unreadCount() {
    return Math.max(0, this.last_seq - this.last_read_seq);
  }

  /** Time of the latest activity, for ordering the chat list. */
  get activityAt() {
    return this.last_message?.created_at ?? this.created_at ?? "";
  }

  roleOf(userId) {
    return this.members?.find((member) => member.id === userId)?.role ?? null;
  }

  /** Whether messages are known to exist past the gap-free window (a hole to fetch). */
  get missingNewer() {
    return this.loaded && this.last_seq > this.high;
  }

  /**
   * Merges messages from any source (history page, catch-up, message.new, message.ack).
   * Keeps one copy per seq, retires the local copy of an own message by client_id, and grows
   * the gap-free window. Returns the number of messages that were new to this chat.
   */
  merge(messages, { fromEvent = false } = {}) {
    let added = 0;
    for (const incoming of messages) {
      if (incoming.chat_id !== this.id) continue;
      const held = this.messages.get(incoming.seq);
      // Socket events go to many readers alike: their `me` flags are false. Keep ours.
      const message = fromEvent && held ? keepMine(incoming, held) : incoming;
      this.noteLastMessage(message);
      if (message.sender_id === this.myId) {
        this.last_read_seq = Math.max(this.last_read_seq, message.seq);
        if (message.client_id) this.pending.delete(message.client_id);
      }
      if (message.is_read) this.read_all_seq = Math.max(this.read_all_seq, message.seq);
      if (this.loose.get(message.seq)) this.keepLoose(message);
      if (!this.loaded) continue;
      if (!held) {
        if (message.seq < this.low) continue; // older than the held window: its page brings it
        this.messages.set(message.seq, message);
        added += 1;
      } else if (newerOrSame(message, held)) {
        this.messages.set(message.seq, { ...message, is_read: message.is_read || held.is_read });
      }
    }
    if (this.loaded) {
      while (this.messages.has(this.high + 1)) this.high += 1;
      while (this.messages.has(this.low - 1)) this.low -= 1;
    }
    return added;
  }

  /**
   * A page of /changes: the current state of every message changed after `version`. Held
   * messages are replaced, new ones (past `high`) are added; changed messages older than the
   * held window are not kept (their page, when loaded, brings them as they are then). With
   * `final` (has_more false) the page's pins are the chat's pins at `version`.
   */
  applyChanges(page) {
    this.merge(page.results.filter((message) => message.seq >= this.low));
    for (const message of page.results) {
      if (message.seq < this.low && this.loose.get(message.seq)) this.keepLoose(message);
    }
    this.version = Math.max(this.version, page.version);
    this.serverVersion = Math.max(this.serverVersion, page.version);
    if (!page.has_more) this.setPins(page.pinned_seqs, page.version);
  }

  /**
   * Marks the chat loaded with the first page of history (the newest messages). `version` is
   * the chat's version known before the page was asked for: everything up to it is in the page,
   * and /changes after it brings what happened since.
   */
  loadInitial(results, hasMore, beforeSeq, version) {
    this.loaded = true;
    this.version = version;
    this.messages.clear();
    this.low = results.length ? results[0].seq : beforeSeq;
    this.high = this.low - 1;
    this.hasOlder = hasMore;
    this.merge(results);
  }

  /** Adds an older page (before_seq=low). */
  addOlder(results, hasMore) {
    if (results.length) this.low = Math.min(this.low, results[0].seq);
    this.hasOlder = hasMore;
    this.merge(results);
  }

  /** Held messages in seq order (only the gap-free window and anything past it). */
  sortedMessages() {
    return [...this.messages.values()].sort((a, b) => a.seq - b.seq);
  }

  isReadByOthers(message) {
    return message.seq <= this.read_all_seq || message.is_read === true;
  }

  typingUsers(now = Date.now()) {
    for (const [userId, until] of this.typing) if (until <= now) this.typing.delete(userId);
    return [...this.typing.keys()];
  }
}

/** Whether `message` is the same state as `held` or a later one (by the message's version). */
function newerOrSame(message, held) {
  return (message.version ?? 0) >= (held.version ?? 0);
}

function mineFor(message, emoji) {
  return message.reactions?.find((reaction) => reaction.emoji === emoji)?.me ?? false;
}

/** `incoming` with the `me` flags of `held` (events carry `me: false` for everyone). */
function keepMine(incoming, held) {
  if (!incoming.reactions?.length) return incoming;
  return { ...incoming, reactions: incoming.reactions.map((r) => ({ ...r, me: r.me || mineFor(held, r.emoji) })) };
}

/** A message deleted for everyone, as the server shows it (PROTOCOL.md §2, `deleted`). */
export function tombstone(message) {
  return {
    ...message,
    deleted: true,
    text: "",
    edited_at: null,
    reply_to: null,
    forwarded_from: null,
    reactions: [],
    attachments: [],
    pinned: false,
  };
}

/** Newest activity first; ties by id, newest first. */
export function compareChats(a, b) {
  if (a.activityAt !== b.activityAt) return a.activityAt < b.activityAt ? 1 : -1;
  return b.id - a.id;
}

/** crypto.randomUUID needs a secure context; plain-http LAN addresses are not one. */
export function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
