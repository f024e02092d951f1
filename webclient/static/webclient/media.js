// Attachments as the reader sees them: photos as thumbnails that open full size in a lightbox,
// videos and audio with the browser's players, voice messages with a play button, their
// waveform and duration, other files as chips with a download link; and the one-line gist of a
// message ("📷 Photo", "🎤 Voice message") for the chat list, quotes and the pinned bar.
// Every URL is a signed, short-lived one from the server (or a blob: URL of a local file).

import { $, bidiSafe, el } from "./dom.js";

const THUMB_SIDE = 280; // CSS pixels a thumbnail takes at most (the server's are 320 px)

/** 1536 -> "1.5 KB": sizes as people read them (powers of 1024, one decimal below 10). */
export function humanSize(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return "";
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/** 75.4 -> "1:15". */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "";
  const whole = Math.round(seconds);
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const secs = String(whole % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${secs}` : `${minutes}:${secs}`;
}

const KIND_LABELS = {
  image: ["📷", "Photo", "photos"],
  video: ["🎬", "Video", "videos"],
  audio: ["🎵", "Audio", "audio files"],
  voice: ["🎤", "Voice message", "voice messages"],
};

/** What a message's attachments are, in a few words: "📷 Photo", "📷 3 photos", "📎 report.pdf". */
export function attachmentsLabel(attachments) {
  if (!attachments?.length) return "";
  const first = attachments[0];
  const same = attachments.every((attachment) => attachment.kind === first.kind);
  const known = KIND_LABELS[first.kind];
  if (!known || first.kind === "file") {
    return same && attachments.length > 1 ? `📎 ${attachments.length} files` : `📎 ${bidiSafe(first.name)}`;
  }
  if (attachments.length === 1) return `${known[0]} ${known[1]}`;
  return same ? `${known[0]} ${attachments.length} ${known[2]}` : `📎 ${attachments.length} files`;
}

/**
 * A message in one line for previews (chat list, quotes, pinned bar, announcements): its text,
 * or what it carries when it has no text; an icon before a caption.
 */
export function messageGist(message) {
  if (!message || message.deleted) return message ? "Message deleted" : "";
  const text = bidiSafe(message.text);
  const attachments = message.attachments ?? [];
  if (!attachments.length) return text;
  if (!text) return attachmentsLabel(attachments);
  return `${attachmentsLabel(attachments).split(" ")[0]} ${text}`;
}

/** The size to reserve for a picture of `width` x `height` shown at most THUMB_SIDE wide/high. */
function fitted(width, height, side = THUMB_SIDE) {
  if (!width || !height) return {};
  const scale = Math.min(1, side / Math.max(width, height));
  return { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) };
}

/**
 * Makes `container` show `attachments` (a message's, or [] for none). Rebuilt only when the
 * files or their URLs change, so a re-render for a reaction does not reload pictures or stop
 * a playing recording.
 */
export function renderAttachments(container, attachments) {
  const key = attachments.map((attachment) => `${attachment.id}|${attachment.url}|${attachment.thumbnail_url}`).join(" ");
  if (container.dataset.key === key) return;
  container.dataset.key = key;
  container.hidden = attachments.length === 0;
  container.classList.toggle("gallery", attachments.filter((attachment) => attachment.kind === "image").length > 1);
  container.replaceChildren(...attachments.map(renderAttachment));
}

function renderAttachment(attachment) {
  const name = bidiSafe(attachment.name);
  switch (attachment.kind) {
    case "image":
      return el(
        "button",
        {
          type: "button",
          className: "att att-image",
          "aria-label": `Open ${name}`,
          title: name,
          onclick: () => openLightbox(attachment),
        },
        el("img", {
          src: attachment.thumbnail_url ?? attachment.url,
          alt: name,
          ...fitted(attachment.width, attachment.height),
          loading: "lazy",
          decoding: "async",
        }),
      );
    case "video":
      return el(
        "figure",
        { className: "att att-video" },
        el("video", {
          src: attachment.url,
          poster: attachment.thumbnail_url,
          controls: true,
          preload: "metadata",
          playsinline: true,
          "aria-label": name,
          ...fitted(attachment.width, attachment.height, 320),
        }),
        el("figcaption", { className: "att-caption" }, el("span", { className: "att-name", text: name }), durationSpan(attachment)),
      );
    case "audio":
      return el(
        "figure",
        { className: "att att-audio" },
        el("figcaption", { className: "att-caption" }, el("span", { className: "att-name", text: `🎵 ${name}` }), durationSpan(attachment)),
        el("audio", { src: attachment.url, controls: true, preload: "metadata", "aria-label": name }),
      );
    case "voice":
      return voicePlayer(attachment);
    default:
      return el(
        "a",
        {
          className: "att att-file",
          href: attachment.url,
          download: name,
          "aria-label": `Download ${name}, ${humanSize(attachment.size)}`,
        },
        el("span", { className: "att-file-icon", "aria-hidden": "true", text: "📄" }),
        el("span", { className: "att-file-body" }, el("span", { className: "att-name", text: name }), el("span", { className: "att-size", text: humanSize(attachment.size) })),
        el("span", { className: "att-file-get", "aria-hidden": "true", text: "⤓" }),
      );
  }
}

function durationSpan(attachment) {
  return attachment.duration ? el("span", { className: "att-duration", text: formatDuration(attachment.duration) }) : null;
}

/** A voice message: ▶/⏸, the waveform (a click seeks), the time left or the duration. */
function voicePlayer(attachment) {
  const duration = attachment.duration ?? 0;
  const audio = el("audio", { src: attachment.url, preload: "metadata" });
  const button = el("button", {
    type: "button",
    className: "voice-play",
    "aria-label": "Play voice message",
    text: "▶",
    onclick: () => (audio.paused ? audio.play().catch(() => {}) : audio.pause()),
  });
  const levels = attachment.waveform?.length ? attachment.waveform : null;
  const wave = el(
    "span",
    { className: "waveform", "aria-hidden": "true" },
    ...(levels ?? Array(32).fill(2)).map((level) => {
      const bar = el("span", { className: "bar" });
      bar.style.setProperty("--level", String((level + 1) / 32)); // CSSOM: the CSP allows no style attributes
      return bar;
    }),
  );
  if (!levels) wave.classList.add("flat");
  const time = el("span", { className: "att-duration", text: formatDuration(duration) });
  const total = () => (Number.isFinite(audio.duration) && audio.duration > 0 ? audio.duration : duration);
  const progress = () => {
    const played = total() ? Math.min(1, audio.currentTime / total()) : 0;
    const bars = wave.children;
    const upTo = Math.round(played * bars.length);
    for (let index = 0; index < bars.length; index += 1) bars[index].classList.toggle("played", index < upTo);
    time.textContent = audio.paused && !audio.currentTime ? formatDuration(duration) : formatDuration(audio.currentTime);
  };
  audio.addEventListener("timeupdate", progress);
  audio.addEventListener("play", () => {
    // One recording at a time, as in every messenger.
    for (const other of document.querySelectorAll(".att-voice audio")) if (other !== audio) other.pause();
    button.textContent = "⏸";
    button.setAttribute("aria-label", "Pause voice message");
  });
  audio.addEventListener("pause", () => {
    button.textContent = "▶";
    button.setAttribute("aria-label", "Play voice message");
  });
  audio.addEventListener("ended", () => {
    audio.currentTime = 0;
    progress();
  });
  wave.addEventListener("click", (event) => {
    const box = wave.getBoundingClientRect();
    if (!total() || !box.width) return;
    audio.currentTime = ((event.clientX - box.left) / box.width) * total();
    if (audio.paused) audio.play().catch(() => {});
  });
  return el(
    "div",
    {
      className: "att att-voice",
      role: "group",
      "aria-label": `Voice message, ${formatDuration(duration)}`,
      dataset: { duration: String(duration) },
    },
    button,
    wave,
    time,
    audio,
  );
}

// --- lightbox -------------------------------------------------------------------------------------

let lightboxWired = false;

/** Shows a photo full size in the #lightbox dialog; Escape, × or a click closes it. */
export function openLightbox(attachment) {
  const dialog = $("lightbox");
  const image = $("lightbox-img");
  if (!lightboxWired) {
    lightboxWired = true;
    dialog.addEventListener("click", (event) => {
      if (!event.target.closest("a")) dialog.close();
    });
    dialog.addEventListener("close", () => {
      image.removeAttribute("src");
      dialog.opener?.focus?.({ preventScroll: true });
    });
  }
  const name = bidiSafe(attachment.name);
  dialog.opener = document.activeElement;
  image.alt = name;
  image.src = attachment.url;
  $("lightbox-caption").textContent = name;
  const download = $("lightbox-download");
  download.href = attachment.url;
  download.download = name;
  dialog.showModal();
  $("lightbox-close").focus();
}
