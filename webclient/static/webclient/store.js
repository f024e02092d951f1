// Client-side state of the chats, without any DOM. The rules come from docs/PROTOCOL.md §3, §4
// and §9: messages are identified and merged by (chat_id, seq); counters from the server are
// absolute and only ever move forward, so merging keeps the maximum; a chat whose messages were
// loaded keeps a gap-free window [low, high] of them, and anything known to exist past `high`
// is fetched with after_seq=high.

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
  }

  noteLastMessage(message) {
    if (!this.last_message || message.seq >= this.last_message.seq) this.last_message = message;
    this.last_seq = Math.max(this.last_seq, message.seq);
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
  merge(messages) {
    let added = 0;
    for (const message of messages) {
      if (message.chat_id !== this.id) continue;
      this.noteLastMessage(message);
      if (message.sender_id === this.myId) {
        this.last_read_seq = Math.max(this.last_read_seq, message.seq);
        if (message.client_id) this.pending.delete(message.client_id);
      }
      if (message.is_read) this.read_all_seq = Math.max(this.read_all_seq, message.seq);
      if (!this.loaded) continue;
      if (!this.messages.has(message.seq)) {
        this.messages.set(message.seq, message);
        added += 1;
      }
    }
    if (this.loaded) {
      while (this.messages.has(this.high + 1)) this.high += 1;
      while (this.messages.has(this.low - 1)) this.low -= 1;
    }
    return added;
  }

  /** Marks the chat loaded with the first page of history (the newest messages). */
  loadInitial(results, hasMore, beforeSeq) {
    this.loaded = true;
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
