// Small DOM helpers shared by the client's modules.

export const $ = (id) => document.getElementById(id);

// Explicit bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) in a user's
// string reorder what is drawn after them: "invoice\u202Efdp.exe" shows as "invoiceexe.pdf", and
// an override in a title would flip the rest of a line it is part of. They are dropped from
// every user string before it is shown; a user string inside a longer text is its own <bdi>,
// and the elements that hold user strings isolate them (`unicode-bidi: plaintext` in
// style.css), so right-to-left text in them cannot move what surrounds them.
const BIDI_CONTROLS = /[\u202A-\u202E\u2066-\u2069]/g;

/** `text` without bidi embedding, override and isolate controls. */
export const bidiSafe = (text) => String(text ?? "").replace(BIDI_CONTROLS, "");

/** A user string for use inside a longer text: a bidi-isolated <bdi> element. */
export const bdi = (text) => el("bdi", { text });

/** document.createElement with properties (className, text (made bidi-safe), dataset, on<event>, attributes) and children. */
export const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "className") node.className = value;
    else if (key === "text") node.textContent = bidiSafe(value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
};

export function formatTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const now = new Date();
  const sameDay = date.toDateString() === now.toDateString();
  return sameDay
    ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : date.toLocaleDateString([], { day: "numeric", month: "short" });
}

let toastTimer = null;
export function showToast(text) {
  const toast = $("toast");
  toast.textContent = text;
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (toast.hidden = true), 6_000);
}

/** Says `text` through the polite live region (screen readers). */
export function announce(text) {
  // Re-set so that the same text twice is still announced.
  const region = $("announcer");
  region.textContent = "";
  requestAnimationFrame(() => (region.textContent = text));
}
