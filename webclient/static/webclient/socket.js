// The live half: one WebSocket to /ws/, authenticated by subprotocol, that reconnects with
// exponential back-off (0.5 s doubling to 30 s, with jitter), refreshes the access token after
// a 4401 close, waits out a 4429 (too many connects) for its retry_after, hands fresh tokens to
// the open socket, and detects dead connections with application pings.

const SUBPROTOCOL = "messenger.v1";
const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_RATE_LIMITED = 4429;
const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 30_000;
const PING_EVERY_MS = 25_000;
const PONG_TIMEOUT_MS = 10_000;

/**
 * Events: "status" (detail.status: "connecting" | "online" | "reconnecting" | "stopped"),
 * "ready" (detail.user: session.ready arrived, events flow from now on), "frame" (detail: any
 * other server frame).
 */
export class LiveSocket extends EventTarget {
  constructor(session) {
    super();
    this.session = session;
    this.ws = null;
    this.ready = false;
    this.status = "stopped";
    this.attempt = 0;
    this._running = false;
    this._retryTimer = null;
    this._pingTimer = null;
    this._pongTimer = null;
    this._onTokens = (event) => this.send({ type: "auth.refresh", ref: "auth.refresh", token: event.detail.access });
    this._onOnline = () => {
      if (this._running && !this.ws) this._connectNow();
    };
  }

  start() {
    if (this._running) return;
    this._running = true;
    this.attempt = 0;
    this.session.addEventListener("tokens", this._onTokens);
    window.addEventListener("online", this._onOnline);
    this._connect();
  }

  stop() {
    this._running = false;
    this.session.removeEventListener("tokens", this._onTokens);
    window.removeEventListener("online", this._onOnline);
    clearTimeout(this._retryTimer);
    this._stopHeartbeat();
    const ws = this.ws;
    this.ws = null;
    this.ready = false;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      ws.close(1000, "bye");
    }
    this._setStatus("stopped");
  }

  /** Sends a frame if the socket is live; false otherwise (the caller keeps it for later). */
  send(frame) {
    if (!this.ready || this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Drops the current connection as a network failure would (used by tests and the watchdog). */
  drop() {
    const ws = this.ws;
    if (!ws) return;
    // Give up on the connection now: a dead network would hold the closing handshake for long.
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(4000, "dropped by client");
    } catch {
      /* already closing */
    }
    this._closed(ws, 4000);
  }

  _setStatus(status) {
    if (status === this.status) return;
    this.status = status;
    this.dispatchEvent(new CustomEvent("status", { detail: { status } }));
  }

  _connectNow() {
    clearTimeout(this._retryTimer);
    this.attempt = 0;
    this._connect();
  }

  async _connect() {
    if (!this._running || this.ws) return;
    this._setStatus(this.attempt === 0 && this.status !== "reconnecting" ? "connecting" : "reconnecting");
    try {
      if (this.session.accessExpiresIn() < 5_000) await this.session.refreshTokens();
    } catch (error) {
      if (!this.session.loggedIn) return; // refused: the session ended and the app shows the login
      return this._scheduleRetry();
    }
    if (!this._running || this.ws) return;
    // The browser says there is no network: do not try (Chromium's offline mode does not always
    // stop a WebSocket handshake to this host); keep backing off, and the "online" event
    // reconnects at once.
    if (navigator.onLine === false) return this._scheduleRetry();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try {
      ws = new WebSocket(`${scheme}//${location.host}/ws/`, [SUBPROTOCOL, `bearer.${this.session.access}`]);
    } catch {
      return this._scheduleRetry();
    }
    this.ws = ws;
    ws.gotReady = false;
    ws.onmessage = (message) => {
      this._armHeartbeat();
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (frame.type === "error" && frame.code === "rate_limited" && !ws.gotReady) {
        ws.retryAfterMs = (frame.retry_after ?? 1) * 1000; // the 4429 close follows
        return;
      }
      if (frame.type === "session.ready") {
        ws.gotReady = true;
        this.ready = true;
        this.attempt = 0;
        this._setStatus("online");
        this.dispatchEvent(new CustomEvent("ready", { detail: { user: frame.user } }));
        return;
      }
      this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
    };
    ws.onclose = (event) => this._closed(ws, event.code);
    ws.onerror = () => {
      /* onclose follows */
    };
  }

  async _closed(ws, code) {
    if (this.ws !== ws) return;
    this.ws = null;
    this.ready = false;
    this._stopHeartbeat();
    if (!this._running) return;
    this._setStatus("reconnecting");
    // 4401: the token expired or the session was revoked. A handshake that failed before
    // session.ready may be a refused token too. Refresh before trying again.
    if (code === CLOSE_UNAUTHORIZED || (!ws.gotReady && this.session.accessExpiresIn() < 30_000)) {
      try {
        await this.session.refreshTokens();
      } catch {
        if (!this.session.loggedIn) return;
      }
    }
    this._scheduleRetry(code === CLOSE_RATE_LIMITED ? (ws.retryAfterMs ?? 1000) : 0);
  }

  _scheduleRetry(atLeastMs = 0) {
    if (!this._running) return;
    this._setStatus("reconnecting");
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** this.attempt);
    const delay = Math.max(atLeastMs, base / 2 + Math.random() * (base / 2));
    this.attempt += 1;
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this._connect(), delay);
  }

  // Heartbeat: any frame proves the connection alive. After PING_EVERY_MS of silence send a
  // ping; if nothing comes back within PONG_TIMEOUT_MS, the connection is dead: drop it.
  _armHeartbeat() {
    this._stopHeartbeat();
    this._pingTimer = setTimeout(() => {
      this.send({ type: "ping", ref: "heartbeat" });
      this._pongTimer = setTimeout(() => this.drop(), PONG_TIMEOUT_MS);
    }, PING_EVERY_MS);
  }

  _stopHeartbeat() {
    clearTimeout(this._pingTimer);
    clearTimeout(this._pongTimer);
  }
}

/**
 * Requests over the socket that expect a reply: each frame gets a `ref`; the reply (the event the
 * other sockets get, plus `ref` and `changed`) or an `error` frame with that ref settles it.
 * Requests still open when the connection goes are refused (the caller may repeat them: every
 * change is safe to repeat, PROTOCOL.md §9).
 */
export class Requests {
  constructor(socket, { timeoutMs = 15_000 } = {}) {
    this.socket = socket;
    this.timeoutMs = timeoutMs;
    this.open = new Map(); // ref -> {resolve, reject, timer}
    this.counter = 0;
    socket.addEventListener("status", (event) => {
      if (event.detail.status !== "online") this._failAll({ code: "network_error", detail: "The connection was lost. Try again." });
    });
  }

  /** Sends `frame`; resolves with the reply frame, rejects with an ApiError-like {code, detail}. */
  send(frame) {
    return new Promise((resolve, reject) => {
      const ref = `op:${++this.counter}`;
      if (!this.socket.send({ ...frame, ref })) {
        reject(new RequestError({ code: "network_error", detail: "You are offline. Try again when connected." }));
        return;
      }
      const timer = setTimeout(() => {
        this.open.delete(ref);
        reject(new RequestError({ code: "timeout", detail: "The server did not answer. Try again." }));
      }, this.timeoutMs);
      this.open.set(ref, { resolve, reject, timer });
    });
  }

  /** Settles the request `ref` with its reply; false if it is not one of ours. */
  answer(ref, frame) {
    const request = this.open.get(ref);
    if (!request) return false;
    this.open.delete(ref);
    clearTimeout(request.timer);
    request.resolve(frame);
    return true;
  }

  /** Refuses the request `ref` with an error frame; false if it is not one of ours. */
  fail(ref, frame) {
    const request = this.open.get(ref);
    if (!request) return false;
    this.open.delete(ref);
    clearTimeout(request.timer);
    request.reject(new RequestError(frame));
    return true;
  }

  _failAll(frame) {
    for (const ref of [...this.open.keys()]) this.fail(ref, frame);
  }
}

export class RequestError extends Error {
  constructor(frame) {
    super(typeof frame.detail === "string" ? frame.detail : frame.code);
    this.code = frame.code;
    this.detail = frame.detail;
  }
}
