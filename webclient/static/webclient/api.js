// The REST half: a login session (tokens kept in sessionStorage, so a reload of the tab keeps
// you logged in and closing the tab forgets you), its refresh before expiry, and JSON requests
// that refresh once and retry when the access token was refused.

const STORAGE_KEY = "messenger.session";
// Refresh this long before the access token expires (at most a quarter of its lifetime).
const REFRESH_MARGIN_MS = 60_000;

export class ApiError extends Error {
  constructor(status, body) {
    super(describeError(body) || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code ?? "http_error";
    this.detail = body?.detail;
    this.retryAfter = body?.retry_after;
  }
}

/** A server error body ({code, detail}) as one readable line. */
export function describeError(body) {
  const detail = body?.detail;
  if (detail == null) return "";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.join(" ");
  return Object.entries(detail)
    .map(([field, messages]) => {
      const text = Array.isArray(messages) ? messages.join(" ") : String(messages);
      return field === "non_field_errors" ? text : `${field}: ${text}`;
    })
    .join(" ");
}

/** The payload of a JWT, or null. Only read for `exp`/`iat`: the server checks signatures. */
export function jwtPayload(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return null;
  }
}

async function readJson(response) {
  if (response.status === 204) return null;
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { code: "bad_response", detail: `Unexpected response (HTTP ${response.status}).` };
  }
}

async function rawRequest(method, path, { body, token, headers: extra } = {}) {
  const headers = { Accept: "application/json", ...extra };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(0, { code: "network_error", detail: "The server cannot be reached." });
  }
  const data = await readJson(response);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** Whether this server offers single sign-on: {enabled, provider, login_url}; disabled if unknown. */
export async function ssoConfig() {
  try {
    return await rawRequest("GET", "/api/auth/sso");
  } catch {
    return { enabled: false, provider: null, login_url: null };
  }
}

/**
 * The logged-in session. Events: "tokens" (a new access token: give it to the socket),
 * "ended" (the session is over: refresh refused or logged out; detail.reason says why).
 */
export class Session extends EventTarget {
  constructor() {
    super();
    this.access = null;
    this.refresh = null;
    this.user = null;
    this._refreshing = null;
    this._timer = null;
    try {
      const saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
      if (saved?.access && saved?.refresh) Object.assign(this, { access: saved.access, refresh: saved.refresh, user: saved.user ?? null });
    } catch {
      /* storage unavailable or corrupt: start logged out */
    }
  }

  get loggedIn() {
    return Boolean(this.refresh);
  }

  _save() {
    try {
      if (this.refresh) {
        sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ access: this.access, refresh: this.refresh, user: this.user }));
      } else {
        sessionStorage.removeItem(STORAGE_KEY);
      }
    } catch {
      /* private mode: tokens stay in memory only */
    }
  }

  async login(username, password) {
    return this._begin(await rawRequest("POST", "/api/auth/token", { body: { username, password } }));
  }

  /** Single sign-on's last step: the one-time code from "/#sso_code=" for a new session's tokens. */
  async loginWithSsoCode(code) {
    return this._begin(await rawRequest("POST", "/api/auth/sso/exchange", { body: { code } }));
  }

  async _begin(tokens) {
    this._setTokens(tokens);
    this.user = await this.request("GET", "/api/users/me");
    this._save();
    return this.user;
  }

  async register(username, email, password) {
    await rawRequest("POST", "/api/auth/register", { body: { username, email, password } });
    return this.login(username, password);
  }

  /** Starts the refresh timer of a restored session and checks it is still alive. */
  async resume() {
    if (!this.loggedIn) return null;
    this._schedule();
    this.user = await this.request("GET", "/api/users/me");
    this._save();
    return this.user;
  }

  _setTokens({ access, refresh }) {
    this.access = access;
    if (refresh) this.refresh = refresh;
    this._save();
    this._schedule();
    this.dispatchEvent(new CustomEvent("tokens", { detail: { access } }));
  }

  /** Milliseconds until the access token expires (negative once expired), by the local clock. */
  accessExpiresIn() {
    const payload = this.access && jwtPayload(this.access);
    return payload?.exp ? payload.exp * 1000 - Date.now() : -1;
  }

  _schedule() {
    clearTimeout(this._timer);
    const payload = this.access && jwtPayload(this.access);
    if (!payload?.exp) return;
    const lifetime = payload.iat ? (payload.exp - payload.iat) * 1000 : 15 * 60_000;
    const margin = Math.min(REFRESH_MARGIN_MS, lifetime / 4);
    const delay = Math.max(1_000, payload.exp * 1000 - Date.now() - margin);
    this._timer = setTimeout(() => this.refreshTokens().catch(() => {}), Math.min(delay, 2 ** 31 - 1));
  }

  /**
   * Trades the refresh token for a new pair. Refresh tokens rotate (the old one is refused
   * afterwards), so concurrent callers share one request. A refused refresh ends the session;
   * a network failure does not (the timer tries again shortly).
   */
  refreshTokens() {
    if (!this._refreshing) {
      const refresh = this.refresh;
      this._refreshing = (async () => {
        if (!refresh) throw new ApiError(401, { code: "not_authenticated", detail: "Not logged in." });
        try {
          const tokens = await rawRequest("POST", "/api/auth/token/refresh", { body: { refresh } });
          if (this.refresh === refresh) this._setTokens(tokens);
          return this.access;
        } catch (error) {
          if (error.status === 401 || error.status === 400) {
            if (this.refresh === refresh) this._end("expired");
          } else {
            clearTimeout(this._timer);
            this._timer = setTimeout(() => this.refreshTokens().catch(() => {}), 5_000);
          }
          throw error;
        }
      })().finally(() => {
        this._refreshing = null;
      });
    }
    return this._refreshing;
  }

  /**
   * A JSON request with the access token; on 401 refreshes once and retries. `headers` are
   * extra request headers (an `Idempotency-Key`: the retry carries the same one).
   */
  async request(method, path, body, { headers } = {}) {
    if (!this.refresh) throw new ApiError(401, { code: "not_authenticated", detail: "Not logged in." });
    if (this.accessExpiresIn() < 5_000) await this.refreshTokens();
    try {
      return await rawRequest(method, path, { body, token: this.access, headers });
    } catch (error) {
      if (error.status !== 401) throw error;
      await this.refreshTokens();
      return rawRequest(method, path, { body, token: this.access, headers });
    }
  }

  async logout() {
    const refresh = this.refresh;
    this._end("logout");
    if (refresh) await rawRequest("POST", "/api/auth/logout", { body: { refresh } }).catch(() => {});
  }

  _end(reason) {
    clearTimeout(this._timer);
    this.access = this.refresh = this.user = null;
    this._save();
    this.dispatchEvent(new CustomEvent("ended", { detail: { reason } }));
  }
}
