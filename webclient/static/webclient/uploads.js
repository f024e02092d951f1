// Files on their way into a message: each one is uploaded on its own (POST /api/uploads, with
// XMLHttpRequest, because fetch reports no upload progress) as soon as it is picked, dropped or
// pasted, and waits in the strip above the composer with its preview, a progress bar and a
// cancel/remove button until Send takes the uploaded ones. Voice messages are recorded with
// MediaRecorder, uploaded with voice=true and sent on their own once uploaded.

import { ApiError } from "./api.js";
import { $, bidiSafe, el } from "./dom.js";
import { humanSize } from "./media.js";

export const MAX_FILES = 10; // attachments per message (the server's ATTACHMENTS_PER_MESSAGE)
// Refresh the access token before an upload that could outlive it: the server checks it only
// once the whole body has arrived.
const TOKEN_MARGIN_MS = 60_000;
const PREVIEWABLE = new Set(["image/jpeg", "image/png", "image/webp", "image/gif"]);

function parseBody(text, status) {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { code: "bad_response", detail: `Unexpected response (HTTP ${status}).` };
  }
}

/**
 * Uploads `file` (a File or Blob, sent under `name`) with the session's access token, refreshed
 * first when it is about to expire and once more after a 401. `onProgress(loaded, total)`
 * follows the bytes sent. Returns {promise (resolves with the upload's JSON, rejects with an
 * ApiError; code "aborted" after cancel), cancel()}.
 */
export function uploadFile(session, file, { name = file.name || "file", voice = false, onProgress = () => {} } = {}) {
  let xhr = null;
  let cancelled = false;
  const aborted = () => new ApiError(0, { code: "aborted", detail: "The upload was cancelled." });
  const attempt = (token) =>
    new Promise((resolve, reject) => {
      if (cancelled) return reject(aborted());
      xhr = new XMLHttpRequest();
      xhr.open("POST", "/api/uploads");
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("Authorization", `Bearer ${token}`);
      xhr.upload.onprogress = (event) => onProgress(event.loaded, event.lengthComputable ? event.total : file.size);
      xhr.onload = () => resolve({ status: xhr.status, body: parseBody(xhr.responseText, xhr.status) });
      xhr.onerror = () => reject(new ApiError(0, { code: "network_error", detail: "The server cannot be reached." }));
      xhr.onabort = () => reject(aborted());
      const form = new FormData();
      form.append("file", file, name);
      if (voice) form.append("voice", "true");
      xhr.send(form);
    });
  const promise = (async () => {
    if (!session.loggedIn) throw new ApiError(401, { code: "not_authenticated", detail: "Not logged in." });
    if (session.accessExpiresIn() < TOKEN_MARGIN_MS) await session.refreshTokens();
    let answer = await attempt(session.access);
    if (answer.status === 401) {
      await session.refreshTokens();
      answer = await attempt(session.access);
    }
    if (answer.status < 200 || answer.status >= 300) throw new ApiError(answer.status, answer.body);
    return answer.body;
  })();
  return {
    promise,
    cancel() {
      cancelled = true;
      xhr?.abort();
    },
  };
}

/** The kind of a local file, for its preview before the server has said what it is. */
function localKind(file) {
  const type = file.type || "";
  if (type.startsWith("image/")) return "image";
  if (type.startsWith("video/")) return "video";
  if (type.startsWith("audio/")) return "audio";
  return "file";
}

const ICONS = { image: "🖼", video: "🎬", audio: "🎵", voice: "🎤", file: "📄" };

/**
 * The files waiting to be sent, per chat (switching chats keeps them). Each item:
 * {key, chatId, file, name, size, kind, previewUrl, loaded, total, status ("uploading" | "done"
 * | "failed"), error, result (the upload's JSON), autoSend (a voice message: sent alone when
 * uploaded)}. Events: "change" (detail.chatId), "uploaded" (detail.item).
 */
export class Uploads extends EventTarget {
  constructor(session) {
    super();
    this.session = session;
    this.byChat = new Map(); // chat id -> [item]
    this.counter = 0;
  }

  list(chatId) {
    return this.byChat.get(chatId) ?? [];
  }

  /** The files Send would take, and whether Send must wait: {count, uploading, failed}. */
  summary(chatId) {
    const items = this.list(chatId).filter((item) => !item.autoSend);
    return {
      count: items.length,
      uploading: items.filter((item) => item.status === "uploading").length,
      failed: items.filter((item) => item.status === "failed").length,
    };
  }

  /** Adds files and starts their uploads; returns how many were refused (over MAX_FILES). */
  add(chatId, files, { voice = false, name = null } = {}) {
    const items = this.list(chatId);
    let room = voice ? files.length : MAX_FILES - items.filter((item) => !item.autoSend).length;
    let refused = 0;
    for (const file of files) {
      if (room <= 0) {
        refused += 1;
        continue;
      }
      room -= 1;
      const kind = voice ? "voice" : localKind(file);
      const item = {
        key: `u${++this.counter}`,
        chatId,
        file,
        name: bidiSafe(name ?? (file.name || "file")),
        size: file.size,
        kind,
        previewUrl: kind === "image" && PREVIEWABLE.has(file.type) ? URL.createObjectURL(file) : null,
        loaded: 0,
        total: file.size,
        status: "uploading",
        error: null,
        result: null,
        voice,
        autoSend: voice,
        job: null,
      };
      items.push(item);
      this._start(item);
    }
    this.byChat.set(chatId, items);
    this._changed(chatId);
    return refused;
  }

  _start(item) {
    item.status = "uploading";
    item.error = null;
    item.loaded = 0;
    const job = uploadFile(this.session, item.file, {
      name: item.name,
      voice: item.voice,
      onProgress: (loaded, total) => {
        item.loaded = loaded;
        item.total = total || item.size;
        this._changed(item.chatId, item);
      },
    });
    item.job = job;
    job.promise.then(
      (result) => {
        if (item.job !== job) return;
        item.job = null;
        item.result = result;
        item.status = "done";
        item.loaded = item.total;
        this._changed(item.chatId);
        this.dispatchEvent(new CustomEvent("uploaded", { detail: { item } }));
      },
      (error) => {
        if (item.job !== job || error.code === "aborted") return;
        item.job = null;
        item.status = "failed";
        item.error = error.message || error.code;
        this._changed(item.chatId);
      },
    );
  }

  retry(item) {
    if (item.status === "failed") {
      this._start(item);
      this._changed(item.chatId);
    }
  }

  /** Cancels the upload of an item (if still running) and drops it. */
  remove(item) {
    const job = item.job;
    item.job = null;
    job?.cancel();
    if (item.previewUrl) URL.revokeObjectURL(item.previewUrl);
    const items = this.list(item.chatId).filter((other) => other !== item);
    if (items.length) this.byChat.set(item.chatId, items);
    else this.byChat.delete(item.chatId);
    this._changed(item.chatId);
  }

  /** The uploads Send takes (the finished ones, in order); they leave the strip. */
  take(chatId, filter = (item) => !item.autoSend) {
    const taken = this.list(chatId).filter((item) => item.status === "done" && filter(item));
    for (const item of taken) this.remove(item);
    return taken.map((item) => item.result);
  }

  /** Everything, for every chat (logout). */
  clear() {
    for (const items of [...this.byChat.values()]) for (const item of items) this.remove(item);
  }

  _changed(chatId, item = null) {
    this.dispatchEvent(new CustomEvent("change", { detail: { chatId, item } }));
  }
}

// --- the strip above the composer -----------------------------------------------------------------

const renderedItems = new Map(); // item key -> li

/** Makes #attach-tray show the items of `chatId`; a progress event updates its item only. */
export function renderTray(uploads, chatId, changedItem = null) {
  const tray = $("attach-tray");
  const items = chatId === null ? [] : uploads.list(chatId);
  if (changedItem) {
    const li = renderedItems.get(changedItem.key);
    if (li) return updateTrayItem(li, changedItem);
  }
  const keep = new Set(items.map((item) => item.key));
  for (const [key, li] of renderedItems) {
    if (!keep.has(key)) {
      li.remove();
      renderedItems.delete(key);
    }
  }
  let previous = null;
  for (const item of items) {
    let li = renderedItems.get(item.key);
    if (!li) {
      li = buildTrayItem(uploads, item);
      renderedItems.set(item.key, li);
    }
    updateTrayItem(li, item);
    const wanted = previous ? previous.nextSibling : tray.firstChild;
    if (wanted !== li) tray.insertBefore(li, wanted);
    previous = li;
  }
  tray.hidden = items.length === 0;
}

function buildTrayItem(uploads, item) {
  const label = item.voice ? "Voice message" : item.name;
  const preview = item.previewUrl
    ? el("img", { className: "tray-thumb", src: item.previewUrl, alt: label })
    : el("span", { className: "tray-thumb tray-icon", "aria-hidden": "true", text: ICONS[item.kind] ?? "📄" });
  const progressId = `progress-${item.key}`;
  return el(
    "li",
    { className: "tray-item", dataset: { key: item.key, kind: item.kind } },
    preview,
    el(
      "span",
      { className: "tray-body" },
      el("span", { className: "tray-name", text: label }),
      el("span", { className: "tray-size", text: humanSize(item.size) }),
      el("progress", { id: progressId, className: "tray-progress", max: "100", value: "0", "aria-label": `Upload of ${label}` }),
      el("span", { className: "tray-status", "aria-live": "polite" }),
    ),
    el("button", { type: "button", className: "tray-retry link", text: "Retry", hidden: true, onclick: () => uploads.retry(item) }),
    el("button", {
      type: "button",
      className: "tray-remove ghost icon",
      text: "×",
      onclick: () => {
        uploads.remove(item);
        $("composer-input").focus();
      },
    }),
  );
}

function updateTrayItem(li, item) {
  li.dataset.status = item.status;
  const progress = li.querySelector("progress");
  const percent = item.status === "done" ? 100 : item.total ? Math.floor((item.loaded / item.total) * 100) : 0;
  progress.value = percent;
  const status = li.querySelector(".tray-status");
  const label = item.voice ? "Voice message" : item.name;
  const text =
    item.status === "failed" ? `Failed: ${item.error}` : item.status === "done" ? (item.autoSend ? "Sending…" : "Ready") : `${percent}%`;
  if (status.textContent !== text) status.textContent = text;
  li.querySelector(".tray-retry").hidden = item.status !== "failed";
  const remove = li.querySelector(".tray-remove");
  const action = item.status === "uploading" ? `Cancel upload of ${label}` : `Remove ${label}`;
  remove.setAttribute("aria-label", action);
  remove.title = action;
}

// --- voice recording ------------------------------------------------------------------------------

const VOICE_TYPES = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/mp4"];

/**
 * One recording at a time from the microphone. `start()` asks for it and starts; `stop()`
 * resolves with the recording (a Blob) or null; `cancel()` throws it away. Events: "state"
 * (started, stopped), "tick" (the elapsed time changed).
 */
export class VoiceRecorder extends EventTarget {
  constructor() {
    super();
    this.recorder = null;
    this.stream = null;
    this.chunks = [];
    this.startedAt = 0;
    this.timer = null;
    this.starting = false;
    this.attempt = 0;
  }

  static get supported() {
    return Boolean(navigator.mediaDevices?.getUserMedia && window.MediaRecorder);
  }

  get active() {
    return Boolean(this.recorder) || this.starting;
  }

  get elapsedMs() {
    return this.recorder ? Date.now() - this.startedAt : 0;
  }

  /** Asks for the microphone and starts; false if cancelled meanwhile. Rejects if refused. */
  async start() {
    if (this.active) return false;
    const attempt = ++this.attempt; // cancel() moves it on: a late microphone is then let go
    this.starting = true;
    this._emit("state");
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (error) {
      if (attempt === this.attempt) {
        this.starting = false;
        this._emit("state");
      }
      throw error;
    }
    if (attempt !== this.attempt) {
      for (const track of stream.getTracks()) track.stop();
      return false;
    }
    this.starting = false;
    this.stream = stream;
    try {
      const mimeType = VOICE_TYPES.find((type) => MediaRecorder.isTypeSupported(type));
      this.recorder = new MediaRecorder(stream, mimeType ? { mimeType } : {});
      this.chunks = [];
      this.recorder.ondataavailable = (event) => {
        if (event.data.size) this.chunks.push(event.data);
      };
      this.recorder.start(250);
    } catch (error) {
      this._release();
      throw error;
    }
    this.startedAt = Date.now();
    this.timer = setInterval(() => this._emit("tick"), 250);
    this._emit("state");
    return true;
  }

  /** Stops and resolves with the recording: {blob, type, durationMs}, or null if there was none. */
  stop() {
    const recorder = this.recorder;
    if (!recorder) {
      this.cancel();
      return Promise.resolve(null);
    }
    const durationMs = this.elapsedMs;
    return new Promise((resolve) => {
      recorder.onstop = () => {
        const type = recorder.mimeType || "audio/webm";
        const blob = new Blob(this.chunks, { type });
        this._release();
        resolve(blob.size ? { blob, type, durationMs } : null);
      };
      recorder.stop();
    });
  }

  cancel() {
    this.attempt += 1;
    this.starting = false;
    if (this.recorder) {
      this.recorder.ondataavailable = null;
      this.recorder.onstop = null;
      if (this.recorder.state !== "inactive") this.recorder.stop();
    }
    this._release();
  }

  _release() {
    clearInterval(this.timer);
    this.timer = null;
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = null;
    this.recorder = null;
    this.chunks = [];
    this._emit("state");
  }

  _emit(type) {
    this.dispatchEvent(new Event(type));
  }
}

/** The file name of a recording of `type` made now ("voice-2026-12-02-15-04-05.webm"). */
export function voiceFileName(type) {
  const stamp = new Date().toISOString().slice(0, 19).replace(/[T:]/g, "-");
  const ext = type.includes("ogg") ? "ogg" : type.includes("mp4") ? "m4a" : "webm";
  return `voice-${stamp}.${ext}`;
}

