// The per-message menu: a row of quick reactions (with "more" for the full picker) and the
// actions the reader may take. One shared element (#msg-menu), opened from a message's "⋯"
// button, a right click or a long press. Keyboard: arrows move between entries, Enter picks,
// Escape or a click outside closes it and gives focus back to what opened it.

import { $, el } from "./dom.js";

// The picker's set: the reactions people use most. The server accepts any single emoji.
const PICKER = [
  "👍", "👎", "❤️", "🔥", "🥰", "👏", "😁", "🤔", "🤯", "😱", "🤬", "😢", "🎉", "🤩", "🤮", "💩",
  "🙏", "👌", "🕊️", "🤡", "🥱", "🥴", "😍", "🐳", "❤️‍🔥", "🌚", "🌭", "💯", "🤣", "⚡", "🍌", "🏆",
  "💔", "🤨", "😐", "🍓", "🍾", "💋", "🖕", "😈", "😴", "😭", "🤓", "👻", "👀", "🎃", "🙈", "😇",
]; // prettier-ignore

let closeCurrent = null;

/**
 * Opens the menu at `anchor` (or at `point` {x, y}, for a right click or long press).
 * `items`: [{label, run, danger}]; `reactions`: quick emoji (null: none); `onReact(emoji)`.
 */
export function openMessageMenu({ anchor, point = null, items, reactions, onReact }) {
  closeCurrent?.();
  const menu = $("msg-menu");
  const quick = $("msg-menu-reactions");
  const picker = $("msg-menu-picker");
  const list = $("msg-menu-items");
  const close = (restoreFocus = true) => {
    if (closeCurrent !== close) return;
    closeCurrent = null;
    menu.hidden = true;
    document.removeEventListener("pointerdown", outside, true);
    menu.removeEventListener("keydown", keys);
    window.removeEventListener("resize", onResize);
    if (restoreFocus && anchor.isConnected) anchor.focus({ preventScroll: true });
  };
  const choose = (action) => () => {
    close(false);
    action();
  };
  const emojiButton = (emoji) =>
    el("button", { type: "button", className: "emoji", role: "menuitem", "aria-label": `React ${emoji}`, text: emoji, onclick: choose(() => onReact(emoji)) });

  quick.hidden = !reactions;
  picker.hidden = true;
  quick.replaceChildren(
    ...(reactions ?? []).map(emojiButton),
    ...(reactions
      ? [
          el("button", {
            type: "button",
            className: "emoji more",
            role: "menuitem",
            "aria-label": "More reactions",
            "aria-expanded": "false",
            text: "＋",
            onclick: (event) => {
              picker.hidden = !picker.hidden;
              event.currentTarget.setAttribute("aria-expanded", String(!picker.hidden));
              if (!picker.hidden) picker.firstElementChild?.focus();
              place();
            },
          }),
        ]
      : []),
  );
  picker.replaceChildren(...(reactions ? PICKER.map(emojiButton) : []));
  list.replaceChildren(
    ...items.map((item) =>
      el("button", { type: "button", role: "menuitem", className: item.danger ? "danger" : "", text: item.label, onclick: choose(item.run) }),
    ),
  );

  const place = () => {
    const box = menu.getBoundingClientRect();
    const from = point ?? anchor.getBoundingClientRect();
    const x = point ? point.x : from.left;
    const y = point ? point.y : from.bottom + 4;
    menu.style.left = `${Math.max(8, Math.min(x, innerWidth - box.width - 8))}px`;
    menu.style.top = `${Math.max(8, y + box.height > innerHeight - 8 ? y - box.height - (point ? 0 : from.height + 8) : y)}px`;
  };
  const onResize = () => close(false);
  const outside = (event) => {
    if (!menu.contains(event.target)) close(false);
  };
  const keys = (event) => {
    const entries = [...menu.querySelectorAll("button")].filter((button) => button.offsetParent !== null);
    const at = entries.indexOf(document.activeElement);
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      close();
    } else if (["ArrowDown", "ArrowRight"].includes(event.key)) {
      event.preventDefault();
      entries[(at + 1) % entries.length]?.focus();
    } else if (["ArrowUp", "ArrowLeft"].includes(event.key)) {
      event.preventDefault();
      entries[(at - 1 + entries.length) % entries.length]?.focus();
    } else if (event.key === "Tab") {
      close(false);
    }
  };

  menu.hidden = false;
  place();
  closeCurrent = close;
  document.addEventListener("pointerdown", outside, true);
  menu.addEventListener("keydown", keys);
  window.addEventListener("resize", onResize);
  menu.querySelector("button")?.focus({ preventScroll: true });
}

/** Closes the menu if it is open (the conversation changed under it). */
export function closeMessageMenu() {
  closeCurrent?.(false);
}
