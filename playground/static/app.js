"use strict";
// The playground page. It renders the state the server pushes over /api/live (one viewer's
// view: see playground/views.py) and sends what the member does - slash commands, button
// presses, forms - to the server's JSON API, which drives the Discord emulator.
//
// Everything a member or the bot wrote reaches the page as DOM text (textContent, text
// nodes); nothing received is ever parsed as HTML. Messages are rendered keyed by id and
// replaced only when they change, so a playing <video> keeps playing across pushes; a
// control focused in a message that is replaced is focused again in its replacement.
// The page's Content-Security-Policy allows no inline script or style: all of it is here
// and in style.css.

const $ = (id) => document.getElementById(id);
const ADMINISTRATOR = 1n << 3n;
const TYPE = { STRING: 3, INTEGER: 4, BOOLEAN: 5, USER: 6, CHANNEL: 7, ROLE: 8,
  MENTIONABLE: 9, NUMBER: 10, ATTACHMENT: 11 };
const BUTTON_STYLES = { 1: "primary", 2: "secondary", 3: "success", 4: "danger", 5: "link",
  6: "premium" };

const ui = {
  state: null,
  viewer: "alice",          // the member's name we look as
  room: null,               // id of the channel or thread shown
  rendered: new Map(),      // message key -> {sig, el}
  renderedRoom: null,
  dismissed: new Set(),     // ephemeral messages dismissed on this page
  sigs: {},                 // what each panel was last built from
  openModal: null,          // interaction id of the form shown in the dialog
  pressed: null,            // the button last pressed ({messageId, mark}): what opens forms
  modalOpener: null,        // what had focus when it opened (see focusMark), to return to
  closedModals: new Set(),  // closed here; the server's next push confirms it
  ws: null,
  retry: 500,
  stick: true,              // keep the newest message in view
};

// -- DOM helpers ------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

function safeUrl(url) {
  if (typeof url !== "string") return null;
  if (url.startsWith("/media/")) return url;
  try {
    const parsed = new URL(url);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

function roomLabel(room) {
  return room.kind === "thread" ? `↳ ${room.name}` : `#${room.name}`;
}

function roomOfDiscordLink(url) {
  // The bot links to threads and messages on discord.com: open them here instead.
  const m = /^https:\/\/discord\.com\/channels\/\d+\/(\d+)(?:\/\d+)?$/.exec(url);
  return m && roomById(m[1]) ? m[1] : null;
}

function link(url, content) {
  const room = typeof url === "string" ? roomOfDiscordLink(url) : null;
  if (room) {
    const label = typeof content === "string" && content === url ? roomLabel(roomById(room)) : content;
    return el("button", { type: "button", class: "mention channel-mention", title: url,
      onclick: () => openRoom(room) }, label);
  }
  const href = safeUrl(url);
  if (!href) return typeof content === "string" ? document.createTextNode(content) : content;
  return el("a", { href, target: "_blank", rel: "noopener noreferrer" }, content);
}

function formatNumber(n) {
  return Number(n).toLocaleString("en-US");
}

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(2)} MB`;
}

function hashColour(text) {
  let h = 0;
  for (const ch of String(text)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % 5;
}

function toast(message) {
  const note = el("div", { class: "toast", text: message });
  $("toasts").append(note);
  setTimeout(() => note.remove(), 6000);
}

async function post(path, body) {
  const init = body instanceof FormData
    ? { method: "POST", body }
    : { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body) };
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new Error("The playground did not answer: it may have stopped (see its terminal).");
  }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error || `${res.status} ${res.statusText}`);
  return data;
}

// -- names for mentions -----------------------------------------------------------------

function userName(id) {
  return (ui.state && ui.state.users[id]) || "unknown-user";
}

function roleName(id) {
  const role = ui.state && ui.state.roles.find((r) => r.id === id);
  return role ? role.name.replace(/^@/, "") : "unknown-role";
}

function allRooms() {
  const rooms = [];
  for (const ch of (ui.state ? ui.state.channels : [])) {
    rooms.push({ ...ch, kind: "channel" });
    for (const t of ch.threads) rooms.push({ ...t, kind: "thread", parent: ch });
  }
  return rooms;
}

function roomById(id) {
  return allRooms().find((r) => r.id === id) || null;
}

// -- timestamps -------------------------------------------------------------------------

const relativeFormat = new Intl.RelativeTimeFormat("en", { numeric: "auto" });

function relative(ms) {
  const seconds = Math.round((ms - Date.now()) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 60) return relativeFormat.format(seconds, "second");
  if (abs < 3600) return relativeFormat.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return relativeFormat.format(Math.round(seconds / 3600), "hour");
  return relativeFormat.format(Math.round(seconds / 86400), "day");
}

function formatStamp(date, style) {
  const opts = {
    t: { hour: "2-digit", minute: "2-digit" },
    T: { hour: "2-digit", minute: "2-digit", second: "2-digit" },
    d: { year: "numeric", month: "2-digit", day: "2-digit" },
    D: { year: "numeric", month: "long", day: "numeric" },
    f: { year: "numeric", month: "long", day: "numeric", hour: "2-digit", minute: "2-digit" },
    F: { weekday: "long", year: "numeric", month: "long", day: "numeric", hour: "2-digit",
      minute: "2-digit" },
  }[style] || {};
  return date.toLocaleString("en-GB", opts);
}

function timestamp(seconds, style) {
  const date = new Date(Number(seconds) * 1000);
  if (Number.isNaN(date.getTime())) return document.createTextNode(`<t:${seconds}>`);
  const node = el("time", { class: "stamp", datetime: date.toISOString(),
    title: date.toLocaleString() });
  if (style === "R") {
    node.dataset.relative = String(date.getTime());
    node.textContent = relative(date.getTime());
  } else {
    node.textContent = formatStamp(date, style || "f");
  }
  return node;
}

function messageTime(ms) {
  const date = new Date(ms);
  return el("time", { class: "msg-time", datetime: date.toISOString(),
    title: date.toLocaleString(),
    text: `Today at ${date.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" })}` });
}

setInterval(() => {
  for (const node of document.querySelectorAll("time[data-relative]")) {
    node.textContent = relative(Number(node.dataset.relative));
  }
}, 1000);

// -- Discord markdown (the subset the bot writes), built as DOM nodes --------------------

const INLINE = new RegExp([
  String.raw`\\([^A-Za-z0-9\s])`,                                   // 1 escaped character
  String.raw`(\`+)([\s\S]*?[^\`])\2(?!\`)`,                         // 2-3 inline code
  String.raw`\*\*([\s\S]+?)\*\*(?!\*)`,                             // 4 bold
  String.raw`__([\s\S]+?)__(?!_)`,                                  // 5 underline
  String.raw`\*(?=\S)([\s\S]*?\S)\*(?!\*)`,                         // 6 italic
  String.raw`\b_([^_\s](?:[^_]*[^_\s])?)_\b`,                       // 7 italic
  String.raw`~~([\s\S]+?)~~`,                                       // 8 strikethrough
  String.raw`\|\|([\s\S]+?)\|\|`,                                   // 9 spoiler
  String.raw`<@!?(\d+)>`,                                           // 10 user mention
  String.raw`<@&(\d+)>`,                                            // 11 role mention
  String.raw`<#(\d+)>`,                                             // 12 channel mention
  String.raw`<t:(-?\d+)(?::([tTdDfFR]))?>`,                         // 13-14 timestamp
  String.raw`<a?:(\w+):\d+>`,                                       // 15 custom emoji
  String.raw`\[([^\]\n]+)\]\(<?(https?:\/\/[^\s)>]+)>?\)`,          // 16-17 masked link
  String.raw`<?(https?:\/\/[^\s<>]*[^\s<>.,:;"'!?)\]])>?`,          // 18 bare link
  String.raw`@(everyone|here)`,                                     // 19
].join("|"), "g");

function spoilerText(content) {
  const span = el("span", { class: "spoiler-text", tabindex: "0", role: "button",
    "aria-label": "Spoiler: press to reveal" }, content);
  const reveal = () => span.classList.add("revealed");
  span.addEventListener("click", reveal);
  span.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); reveal(); }
  });
  return span;
}

function inlineToken(m, depth) {
  if (m[1] !== undefined) return m[1];
  if (m[2] !== undefined) return el("code", { class: "inline-code", text: m[3] });
  if (m[4] !== undefined) return el("strong", {}, inline(m[4], depth + 1));
  if (m[5] !== undefined) return el("u", {}, inline(m[5], depth + 1));
  if (m[6] !== undefined) return el("em", {}, inline(m[6], depth + 1));
  if (m[7] !== undefined) return el("em", {}, inline(m[7], depth + 1));
  if (m[8] !== undefined) return el("s", {}, inline(m[8], depth + 1));
  if (m[9] !== undefined) return spoilerText(inline(m[9], depth + 1));
  if (m[10] !== undefined) return el("span", { class: "mention", text: `@${userName(m[10])}` });
  if (m[11] !== undefined) return el("span", { class: "mention", text: `@${roleName(m[11])}` });
  if (m[12] !== undefined) {
    const room = roomById(m[12]);
    if (!room) return el("span", { class: "mention", text: "#unknown" });
    return el("button", { type: "button", class: "mention channel-mention",
      onclick: () => openRoom(room.id) }, roomLabel(room));
  }
  if (m[13] !== undefined) return timestamp(m[13], m[14]);
  if (m[15] !== undefined) return `:${m[15]}:`;
  if (m[16] !== undefined) return link(m[17], inline(m[16], depth + 1));
  if (m[18] !== undefined) return link(m[18], m[18]);
  if (m[19] !== undefined) return el("span", { class: "mention", text: `@${m[19]}` });
  return m[0];
}

function inline(text, depth = 0) {
  const frag = document.createDocumentFragment();
  if (depth > 6) {
    frag.append(text);
    return frag;
  }
  const re = new RegExp(INLINE.source, "g");
  let last = 0;
  let m;
  while ((m = re.exec(text)) !== null) {
    if (m[0].length === 0) { re.lastIndex += 1; continue; }
    if (m.index > last) frag.append(text.slice(last, m.index));
    frag.append(inlineToken(m, depth));
    last = re.lastIndex;
  }
  frag.append(text.slice(last));
  return frag;
}

function markdownLines(text, root) {
  const lines = text.split("\n");
  let quote = null;
  let quoteAll = false;
  for (const raw of lines) {
    let line = raw;
    let quoted = quoteAll;
    if (!quoted && line.startsWith(">>> ")) { quoteAll = quoted = true; line = line.slice(4); }
    else if (!quoted && (line.startsWith("> ") || line === ">")) {
      quoted = true;
      line = line.slice(2);
    }
    let node;
    const heading = /^(#{1,3}) (.+)$/.exec(line);
    if (heading) node = el(`h${heading[1].length + 2}`, { class: "md-heading" }, inline(heading[2]));
    else if (line.startsWith("-# ")) node = el("div", { class: "md-subtext" }, inline(line.slice(3)));
    else if (/^\s*[-*] /.test(line)) {
      node = el("div", { class: "md-list-item" }, inline(line.replace(/^\s*[-*] /, "")));
    } else node = el("div", { class: "md-line" }, line ? inline(line) : "\u200b");
    if (quoted) {
      if (!quote) {
        quote = el("blockquote", { class: "md-quote" });
        root.append(quote);
      }
      quote.append(node);
    } else {
      quote = null;
      root.append(node);
    }
  }
}

function markdown(text, cls = "markdown") {
  const root = el("div", { class: cls });
  const parts = String(text).trim().split(/```(?:[\w+-]*\n)?([\s\S]*?)```/);
  parts.forEach((part, i) => {
    if (i % 2) root.append(el("pre", { class: "code-block" }, el("code", { text: part })));
    else if (part.replace(/^\n+|\n+$/g, "")) markdownLines(part.replace(/^\n+|\n+$/g, ""), root);
  });
  return root;
}

// -- messages ---------------------------------------------------------------------------

function avatar(name, bot) {
  return el("div", { class: `avatar c${hashColour(name)}${bot ? " bot" : ""}`,
    "aria-hidden": "true", text: name.slice(0, 1).toUpperCase() });
}

function renderEmbed(e) {
  const box = el("div", { class: "embed" });
  if (typeof e.color === "number") {
    box.style.borderLeftColor = `#${e.color.toString(16).padStart(6, "0")}`;
  }
  if (e.author && e.author.name) box.append(el("div", { class: "embed-author", text: e.author.name }));
  if (e.title) {
    box.append(el("div", { class: "embed-title" },
      e.url ? link(e.url, inline(e.title)) : inline(e.title)));
  }
  if (e.description) box.append(markdown(e.description, "embed-description markdown"));
  if (Array.isArray(e.fields) && e.fields.length) {
    const grid = el("div", { class: "embed-fields" });
    for (const f of e.fields) {
      grid.append(el("div", { class: `embed-field${f.inline ? " inline" : ""}` },
        el("div", { class: "embed-field-name" }, inline(String(f.name))),
        markdown(String(f.value), "embed-field-value markdown")));
    }
    box.append(grid);
  }
  for (const key of ["image", "thumbnail"]) {
    if (e[key] && safeUrl(e[key].url)) {
      box.append(el("div", { class: `embed-${key}` }, link(e[key].url, `${key}: ${e[key].url}`)));
    }
  }
  const footer = [];
  if (e.footer && e.footer.text) footer.push(e.footer.text);
  if (e.timestamp) {
    const date = new Date(e.timestamp);
    if (!Number.isNaN(date.getTime())) footer.push(date.toLocaleString("en-GB"));
  }
  if (footer.length) box.append(el("div", { class: "embed-footer", text: footer.join(" • ") }));
  return box;
}

async function press(message, customId, control, values) {
  // Remembered as what opens the form the bot may answer with (see showModal), and to
  // give focus back: disabling the control while the press is sent takes its focus away.
  const article = control.closest("article[data-id]");
  const pressed = { messageId: message.id, mark: article ? markOf(article, control) : null };
  ui.pressed = pressed;
  const hadFocus = document.activeElement === control;
  control.disabled = true;
  try {
    await post("/api/click", { as: ui.viewer, message_id: message.id, custom_id: customId,
      values: values ?? null });
  } catch (err) {
    toast(err.message);
  } finally {
    control.disabled = false;
    const lost = !document.activeElement || document.activeElement === document.body;
    if (hadFocus && lost && !$("modal").open) returnFocus(pressed, null);
  }
}

function renderButton(c, message) {
  const label = [c.emoji && c.emoji.name, c.label].filter(Boolean).join(" ") || "\u200b";
  const style = BUTTON_STYLES[c.style] || "secondary";
  if (c.style === 5) {
    const href = safeUrl(c.url);
    return href
      ? el("a", { class: "btn btn-secondary", href, target: "_blank", rel: "noopener noreferrer",
        text: `${label} ↗` })
      : el("span", { class: "btn btn-secondary", text: label });
  }
  const button = el("button", { type: "button", class: `btn btn-${style}`, text: label,
    disabled: Boolean(c.disabled), dataset: { customId: c.custom_id || "" } });
  button.addEventListener("click", () => press(message, c.custom_id, button));
  return button;
}

function renderSelect(c, message) {
  const select = el("select", { class: "component-select", "aria-label": c.placeholder || "Choose",
    disabled: Boolean(c.disabled), dataset: { customId: c.custom_id || "" } },
  el("option", { value: "", text: c.placeholder || "Make a selection" }),
  ...(c.options || []).map((o) => el("option", { value: o.value, text: o.label })));
  select.addEventListener("change", () => {
    if (select.value) press(message, c.custom_id, select, [select.value]);
  });
  return select;
}

function renderComponent(c, message, parent) {
  switch (c.type) {
    case 1: {
      const row = el("div", { class: "action-row" });
      for (const child of c.components || []) renderComponent(child, message, row);
      parent.append(row);
      break;
    }
    case 2: parent.append(renderButton(c, message)); break;
    case 3: parent.append(renderSelect(c, message)); break;
    case 10: parent.append(markdown(c.content || "")); break;
    case 9: case 17: {
      const box = el("div", { class: c.type === 17 ? "container" : "section" });
      for (const child of c.components || []) renderComponent(child, message, box);
      if (c.accessory) renderComponent(c.accessory, message, box);
      parent.append(box);
      break;
    }
    default: break;
  }
}

function renderAttachment(a, reuse) {
  const kept = reuse && reuse.get(a.id);
  if (kept) return kept;  // the same element: a video keeps playing
  const url = safeUrl(a.url);
  const kind = a.content_type || "";
  let media = null;
  if (kind.startsWith("video/") || /\.(mp4|webm|mov|m4v|mkv)$/i.test(a.filename)) {
    media = el("video", { class: "media", controls: true, preload: "metadata", src: url,
      "aria-label": a.filename });
  } else if (kind.startsWith("image/")) {
    media = el("img", { class: "media", src: url, alt: a.filename });
  } else if (kind.startsWith("audio/")) {
    media = el("audio", { controls: true, preload: "metadata", src: url, "aria-label": a.filename });
  }
  const figure = el("figure", { class: "attachment", dataset: { attId: a.id } }, media,
    el("figcaption", {}, link(url, a.filename), ` · ${formatSize(a.size)}`));
  if (a.spoiler) {
    figure.classList.add("spoiler");
    const cover = el("button", { type: "button", class: "spoiler-cover", text: "SPOILER" });
    cover.addEventListener("click", () => { figure.classList.remove("spoiler"); cover.remove(); });
    figure.append(cover);
  }
  return figure;
}

function renderMessage(m, reuse) {
  // tabindex -1: focus can be put on the message when the control that had it is gone.
  const article = el("article", { class: `msg${m.ephemeral ? " ephemeral" : ""}`,
    tabindex: "-1", dataset: { id: m.id, author: m.author.name } });
  if (m.command) {
    article.append(el("div", { class: "reply-line" },
      el("span", { class: "reply-user", text: m.command.user }), " used ",
      el("span", { class: "reply-command", text: m.command.name })));
  }
  const head = el("header", { class: "msg-head" },
    el("span", { class: "author", text: m.author.name }),
    m.author.bot ? el("span", { class: "app-tag", text: "APP" }) : null,
    messageTime(m.timestamp_ms));
  const body = el("div", { class: "msg-body" }, head);
  if (m.loading) {
    body.append(el("div", { class: "thinking" }, `${m.author.name} is thinking`,
      el("span", { class: "dots", "aria-hidden": "true", text: "…" })));
  }
  if (m.content) {
    const content = markdown(m.content, "content markdown");
    if (m.edited) {
      const lines = content.querySelectorAll(".md-line, .md-list-item, .md-subtext");
      (lines.length ? lines[lines.length - 1] : content)
        .append(el("span", { class: "edited", text: " (edited)" }));
    }
    body.append(content);
  }
  for (const e of m.embeds || []) body.append(renderEmbed(e));
  if (m.attachments.length) {
    const box = el("div", { class: "attachments" });
    for (const a of m.attachments) box.append(renderAttachment(a, reuse));
    body.append(box);
  }
  if (m.components && m.components.length) {
    const box = el("div", { class: "components" });
    for (const c of m.components) renderComponent(c, m, box);
    body.append(box);
  }
  if (m.thread) {
    body.append(el("button", { type: "button", class: "thread-chip",
      dataset: { thread: m.thread.id }, onclick: () => openRoom(m.thread.id) },
    el("span", { class: "thread-icon", "aria-hidden": "true", text: "Thread" }),
    el("span", { class: "thread-name", text: m.thread.name }),
    el("span", { class: "thread-count",
      text: `${m.thread.messages} message${m.thread.messages === 1 ? "" : "s"} ›` })));
  }
  if (m.ephemeral) {
    body.append(el("div", { class: "ephemeral-note" },
      el("span", { class: "eye", "aria-hidden": "true", text: "◉ " }), "Only you can see this · ",
      el("button", { type: "button", class: "link-button", text: "Dismiss message",
        dataset: { action: "dismiss" },
        onclick: () => { ui.dismissed.add(m.id); renderMessages(); } })));
  }
  article.append(avatar(m.author.name, m.author.bot), body);
  return article;
}

function renderUnanswered(u) {
  const botName = ui.state.bot.name;
  return el("article", { class: "msg ephemeral system", dataset: { id: u.id } },
    avatar(botName, true),
    el("div", { class: "msg-body" },
      el("header", { class: "msg-head" }, el("span", { class: "author", text: botName }),
        el("span", { class: "app-tag", text: "APP" }), messageTime(u.timestamp_ms)),
      el("div", { class: "failed", text: "The application did not respond" }),
      el("div", { class: "ephemeral-note", text: "◉ Only you can see this" })));
}

// -- focus across re-renders ----------------------------------------------------------
// A message that changed is rendered anew and replaces the old element, which would drop
// keyboard focus on the floor. What had focus is remembered by a key that its counterpart
// in the new element shares (a button's custom_id, the thread link, an attachment's id...),
// or failing that by its place among the message's controls.

const FOCUSABLE = "button, a[href], select, input, textarea, video, audio, [tabindex]";

function controlKey(node) {
  const d = node.dataset || {};
  if (d.customId) return `custom:${d.customId}`;
  if (d.thread) return `thread:${d.thread}`;
  if (d.action) return `action:${d.action}`;
  if (d.room) return `room:${d.room}`;
  const figure = node.closest("figure[data-att-id]");
  if (figure) return `att:${figure.dataset.attId}:${node.tagName}:${node.className}`;
  const href = node.getAttribute("href");
  if (href) return `href:${href}`;
  return null;
}

function markOf(container, node) {
  if (node === container) return { self: true };
  return { key: controlKey(node), index: [...container.querySelectorAll(FOCUSABLE)].indexOf(node) };
}

function focusMark(container) {
  // What has focus in `container`, to focus again in its replacement (null: nothing).
  const active = document.activeElement;
  if (!active || !container.contains(active)) return null;
  return markOf(container, active);
}

function findMarked(container, mark) {
  if (mark.self) return container;
  const controls = [...container.querySelectorAll(FOCUSABLE)];
  const found = mark.key ? controls.find((c) => controlKey(c) === mark.key) : controls[mark.index];
  return found && !found.disabled ? found : null;
}

function refocus(container, mark) {
  (findMarked(container, mark) || container).focus({ preventScroll: true });
}

function openerMark() {
  // What opened a dialog: a control in a message (found again by message id, as the
  // message may have been rendered anew meanwhile), or any other element.
  const active = document.activeElement;
  const article = active && active.closest ? active.closest("#message-list article[data-id]") : null;
  if (article) return { messageId: article.dataset.id, mark: focusMark(article) };
  return { element: active };
}

function returnFocus(opener, fallback = $("command")) {
  let target = null;
  if (opener && opener.messageId) {
    const entry = ui.rendered.get(opener.messageId);
    if (entry && entry.el.isConnected && opener.mark) target = findMarked(entry.el, opener.mark);
  } else if (opener && opener.element && opener.element !== document.body
             && opener.element.isConnected && !opener.element.disabled) {
    target = opener.element;
  }
  target = target || fallback;
  if (target) target.focus();
}

function mediaOf(node) {
  const found = new Map();
  for (const figure of node.querySelectorAll("figure[data-att-id]")) {
    found.set(figure.dataset.attId, figure);
  }
  return found;
}

function renderMessages() {
  const list = $("message-list");
  const scroller = $("messages");
  const changedRoom = ui.renderedRoom !== ui.room;
  if (changedRoom) {
    list.replaceChildren();
    ui.rendered.clear();
    ui.renderedRoom = ui.room;
  }
  if (changedRoom) ui.stick = true;
  const items = (ui.state.messages[ui.room] || [])
    .filter((m) => !ui.dismissed.has(m.id))
    .map((m) => ({ key: m.id, message: m }));
  for (const u of ui.state.unanswered) {
    if (u.channel_id === ui.room) items.push({ key: `u${u.id}`, unanswered: u, id: u.id });
  }
  items.sort((a, b) => {
    const x = BigInt(a.message ? a.message.id : a.id);
    const y = BigInt(b.message ? b.message.id : b.id);
    return x < y ? -1 : x > y ? 1 : 0;
  });
  const keep = new Set();
  items.forEach((item, index) => {
    const sig = JSON.stringify(item.message || item.unanswered);
    let entry = ui.rendered.get(item.key);
    if (!entry || entry.sig !== sig) {
      // Before rendering: a reused <video> leaves the old element, and its focus, then.
      const mark = entry ? focusMark(entry.el) : null;
      const node = item.message
        ? renderMessage(item.message, entry ? mediaOf(entry.el) : null)
        : renderUnanswered(item.unanswered);
      if (entry) entry.el.replaceWith(node);
      if (mark) refocus(node, mark);
      entry = { sig, el: node };
      ui.rendered.set(item.key, entry);
    }
    keep.add(item.key);
    const here = list.children[index];
    if (here !== entry.el) list.insertBefore(entry.el, here || null);
  });
  for (const [key, entry] of ui.rendered) {
    if (!keep.has(key)) {
      const hadFocus = focusMark(entry.el) !== null;
      entry.el.remove();
      ui.rendered.delete(key);
      if (hadFocus) scroller.focus({ preventScroll: true });  // the message list, not <body>
    }
  }
  if (ui.stick) scroller.scrollTop = scroller.scrollHeight;
}

function followNewMessages() {
  // Stay at the newest message while the member has not scrolled up, also when a video's
  // size becomes known after it was placed.
  const scroller = $("messages");
  scroller.addEventListener("scroll", () => {
    ui.stick = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 120;
  });
  new ResizeObserver(() => {
    if (ui.stick) scroller.scrollTop = scroller.scrollHeight;
  }).observe($("message-list"));
}

// -- sidebar, header, members -----------------------------------------------------------

function roomBadges(room) {
  const badges = [];
  if (room.nsfw) badges.push(["nsfw", "NSFW"]);
  if (room.audit) badges.push(["audit", "audit"]);
  if (room.kind === "channel" && !room.bot_can_create_threads) badges.push(["nothreads", "no threads"]);
  return badges;
}

function renderChannels() {
  const rooms = allRooms();
  const sig = JSON.stringify([rooms.map((r) => [r.id, r.name]), ui.room]);
  if (sig === ui.sigs.channels) return;
  ui.sigs.channels = sig;
  const focused = document.activeElement && document.activeElement.dataset
    ? document.activeElement.dataset.room : null;
  const list = $("channels");
  list.replaceChildren();
  for (const ch of ui.state.channels) {
    const item = el("li");
    const current = ui.room === ch.id;
    item.append(el("button", { type: "button", class: `channel${current ? " active" : ""}`,
      "aria-current": current ? "page" : null, dataset: { room: ch.id, name: ch.name },
      onclick: () => openRoom(ch.id) },
    el("span", { class: `hash${ch.nsfw ? " nsfw" : ""}`, "aria-hidden": "true", text: "#" }),
    el("span", { class: "channel-name", text: ch.name }),
    ...roomBadges({ ...ch, kind: "channel" }).map(([cls, text]) =>
      el("span", { class: `badge badge-${cls}`, text }))));
    if (ch.threads.length) {
      const threads = el("ul", { class: "threads", "aria-label": `Threads in #${ch.name}` });
      for (const t of ch.threads) {
        const on = ui.room === t.id;
        threads.append(el("li", {}, el("button", { type: "button",
          class: `thread${on ? " active" : ""}`, "aria-current": on ? "page" : null,
          dataset: { room: t.id }, onclick: () => openRoom(t.id) },
        el("span", { class: "thread-mark", "aria-hidden": "true", text: "↳ " }), t.name)));
      }
      item.append(threads);
    }
    list.append(item);
  }
  if (focused) {
    const again = list.querySelector(`[data-room="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}

function renderHeader() {
  const room = roomById(ui.room);
  if (!room) return;
  const thread = room.kind === "thread";
  $("room-icon").textContent = thread ? "↳" : "#";
  $("room-icon").classList.toggle("nsfw", Boolean(room.nsfw));
  $("room-title").textContent = room.name;
  $("back").hidden = !thread;
  $("room-badges").replaceChildren(...roomBadges(room).map(([cls, text]) =>
    el("span", { class: `badge badge-${cls}`, text })));
  $("room-topic").textContent = thread ? `Thread in #${room.parent.name}` : room.topic;
  const intro = $("room-intro");
  intro.replaceChildren(
    el("div", { class: "intro-icon", "aria-hidden": "true", text: thread ? "↳" : "#" }),
    el("h3", { text: thread ? room.name : `Welcome to #${room.name}!` }),
    el("p", { text: thread ? `A thread in #${room.parent.name}.`
      : `This is the start of the #${room.name} channel. ${room.topic}` }));
  document.title = `${thread ? "" : "#"}${room.name} · ref2video playground`;
}

function renderViewers() {
  const sig = JSON.stringify([ui.state.members.map((m) => m.name), ui.viewer]);
  if (sig === ui.sigs.viewers) return;
  ui.sigs.viewers = sig;
  const box = $("viewers");
  const focused = document.activeElement && document.activeElement.name === "viewer";
  box.replaceChildren();
  for (const m of ui.state.members) {
    const id = `viewer-${m.name}`;
    const input = el("input", { type: "radio", name: "viewer", id, value: m.name,
      checked: m.name === ui.viewer });
    input.addEventListener("change", () => setViewer(m.name));
    box.append(el("label", { for: id, class: "viewer", dataset: { viewer: m.name } }, input,
      avatar(m.name, false), el("span", { class: "viewer-name", text: m.name }),
      m.moderator ? el("span", { class: "role-tag", text: "Manage Server" }) : null));
    if (focused && m.name === ui.viewer) setTimeout(() => input.focus(), 0);
  }
}

function renderMembers() {
  const sig = JSON.stringify([ui.state.members, ui.viewer]);
  if (sig === ui.sigs.members) return;
  ui.sigs.members = sig;
  const list = $("member-list");
  list.replaceChildren();
  for (const m of ui.state.members) {
    list.append(el("li", { class: `member${m.name === ui.viewer ? " me" : ""}`,
      dataset: { member: m.name } },
    avatar(m.name, false),
    el("div", { class: "member-text" },
      el("div", { class: "member-name" }, m.name,
        m.moderator ? el("span", { class: "role-tag", text: "Moderator" }) : null,
        m.name === ui.viewer ? el("span", { class: "you", text: "you" }) : null),
      el("div", { class: "member-credits" },
        el("span", { class: "available", text: formatNumber(m.available) }), " credits · ",
        el("span", { class: "held", text: formatNumber(m.held) }), " held"))));
  }
}

function renderAbout() {
  const about = ui.state.about || {};
  const sig = JSON.stringify(about);
  if (sig === ui.sigs.about) return;
  ui.sigs.about = sig;
  const rows = [
    ["WaveSpeed", `simulated, ${about.speedup ?? "?"}× speed`],
    ["Failures", `${Math.round((about.failure_rate ?? 0) * 100)}% of clips`],
    ["Data", about.data_dir || ""],
    ["Bot log", about.bot_log || ""],
  ];
  $("about").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
}

// -- the command box --------------------------------------------------------------------

function viewerPermissions() {
  try {
    return BigInt(ui.state.viewer_permissions);
  } catch {
    return 0n;
  }
}

function hiddenFromViewer(command) {
  if (command.permissions === null) return false;
  const mine = viewerPermissions();
  if (mine & ADMINISTRATOR) return false;
  return (BigInt(command.permissions) & ~mine) !== 0n || BigInt(command.permissions) === 0n;
}

function renderComposer() {
  const commands = ui.state.commands;
  const sig = JSON.stringify([commands, ui.state.viewer_permissions]);
  if (sig === ui.sigs.commands) {
    refreshChoices();
    return;
  }
  ui.sigs.commands = sig;
  const select = $("command");
  const previous = select.value || "ref2video";
  const open = el("optgroup", { label: "Commands" });
  const hidden = el("optgroup", { label: "Hidden from you in Discord (needs Manage Server)" });
  for (const c of commands) {
    (hiddenFromViewer(c) ? hidden : open).append(el("option", { value: c.key, text: `/${c.key}` }));
  }
  select.replaceChildren(open, ...(hidden.children.length ? [hidden] : []));
  const keep = commands.some((c) => c.key === previous) ? previous : (commands[0] || {}).key;
  if (keep) select.value = keep;
  if (select.dataset.built !== select.value) buildOptions();
  else refreshChoices();
}

function currentCommand() {
  return ui.state ? ui.state.commands.find((c) => c.key === $("command").value) : null;
}

function choiceList(kind, channelTypes) {
  const s = ui.state;
  const users = s.members.map((m) => [m.id, `@${m.name}`]);
  const roles = s.roles.map((r) => [r.id, r.name.startsWith("@") ? r.name : `@${r.name}`]);
  if (kind === "user") return users;
  if (kind === "role") return roles;
  if (kind === "mentionable") return [...users, ...roles];
  const wanted = channelTypes ? channelTypes.split(",").filter(Boolean).map(Number) : [];
  return allRooms()
    .filter((r) => !wanted.length || wanted.includes(r.kind === "thread" ? 11 : 0))
    .map((r) => [r.id, r.kind === "thread" ? `↳ ${r.name}` : `#${r.name}`]);
}

function refreshChoices() {
  for (const select of $("options").querySelectorAll("select[data-choices]")) {
    const items = choiceList(select.dataset.choices, select.dataset.channelTypes);
    const sig = JSON.stringify(items);
    if (select.dataset.sig === sig) continue;
    select.dataset.sig = sig;
    const value = select.value;
    const first = select.options[0];
    select.replaceChildren(first, ...items.map(([id, name]) => el("option", { value: id, text: name })));
    if (items.some(([id]) => id === value)) select.value = value;
  }
}

async function useSample(input, button, note) {
  button.disabled = true;
  try {
    const res = await fetch("/api/sample-reference");
    if (!res.ok) throw new Error(`sample clip: ${res.status} ${res.statusText}`);
    const blob = await res.blob();
    const files = new DataTransfer();
    files.items.add(new File([blob], "sample-reference.mp4", { type: "video/mp4" }));
    input.files = files.files;
    note.textContent = `sample-reference.mp4 (${formatSize(blob.size)}) chosen`;
  } catch (err) {
    toast(err.message);
  } finally {
    button.disabled = false;
  }
}

function optionField(o) {
  const id = `opt-${o.name}`;
  const placeholder = o.required ? "Choose…" : "— (leave out)";
  const common = { id, name: o.name, required: Boolean(o.required),
    "aria-describedby": `${id}-desc` };
  let input;
  if (o.autocomplete) {
    // The bot suggests values as the member types (autocomplete interactions).
    input = el("input", { ...common, type: "text", autocomplete: "off", list: `${id}-choices`,
      inputmode: o.type === TYPE.STRING ? null : "decimal" });
    const list = el("datalist", { id: `${id}-choices` });
    let timer = null;
    const suggest = async () => {
      try {
        const answer = await post("/api/autocomplete", { as: ui.viewer, channel: ui.room,
          command: currentCommand().key, focused: o.name, options: typedValues() });
        list.replaceChildren(...answer.choices.map((c) =>
          el("option", { value: String(c.value), label: c.name })));
      } catch (err) {
        list.replaceChildren();
      }
    };
    input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(suggest, 200); });
    input.addEventListener("focus", suggest);
    const field = fieldFor(o, id, input);
    field.insertBefore(list, field.lastChild);
    return field;
  }
  if (o.choices && o.choices.length) {
    input = el("select", common, el("option", { value: "", text: placeholder }),
      ...o.choices.map((c) => el("option", { value: String(c.value), text: c.name })));
  } else if (o.type === TYPE.STRING) {
    input = el("input", { ...common, type: "text", autocomplete: "off",
      minlength: o.min_length ?? null, maxlength: o.max_length ?? null });
  } else if (o.type === TYPE.INTEGER || o.type === TYPE.NUMBER) {
    input = el("input", { ...common, type: "number", step: o.type === TYPE.INTEGER ? "1" : "any",
      min: o.min_value ?? null, max: o.max_value ?? null });
  } else if (o.type === TYPE.BOOLEAN) {
    input = el("select", common, el("option", { value: "", text: placeholder }),
      el("option", { value: "true", text: "True" }), el("option", { value: "false", text: "False" }));
  } else if ([TYPE.USER, TYPE.CHANNEL, TYPE.ROLE, TYPE.MENTIONABLE].includes(o.type)) {
    input = el("select", { ...common, dataset: { choices: o.type_name,
      channelTypes: (o.channel_types || []).join(",") } }, el("option", { value: "", text: placeholder }));
  } else if (o.type === TYPE.ATTACHMENT) {
    const audio = /audio/.test(o.name);
    input = el("input", { ...common, type: "file",
      accept: audio ? "audio/*,.mp3,.wav,.m4a,.aac,.ogg,.flac" : "video/*,.mp4,.mov,.webm,.m4v,.mkv" });
  } else {
    input = el("input", { ...common, type: "text" });
  }
  return fieldFor(o, id, input);
}

function fieldFor(o, id, input) {
  input.dataset.type = String(o.type);
  const label = el("label", { for: id },
    el("span", { class: "opt-name", text: o.name }),
    o.required ? el("span", { class: "required", title: "required", text: " *" }) : null,
    el("span", { class: "opt-type", text: o.type_name }));
  const field = el("div", { class: `field field-${o.type_name}` }, label, input);
  if (o.type === TYPE.ATTACHMENT && !/audio/.test(o.name)) {
    const note = el("span", { class: "file-note", "aria-live": "polite" });
    const button = el("button", { type: "button", class: "secondary sample",
      text: "Use a sample clip", "aria-describedby": id });
    button.addEventListener("click", () => useSample(input, button, note));
    input.addEventListener("change", () => { note.textContent = ""; });
    field.append(el("div", { class: "file-tools" }, button, note));
  }
  const limits = [];
  if (o.min_value !== undefined && o.min_value !== null) limits.push(`min ${o.min_value}`);
  if (o.max_value !== undefined && o.max_value !== null) limits.push(`max ${o.max_value}`);
  const chars = (n) => `${n} character${n === 1 ? "" : "s"}`;
  if (o.min_length) limits.push(`at least ${chars(o.min_length)}`);
  if (o.max_length) limits.push(`at most ${chars(o.max_length)}`);
  field.append(el("small", { id: `${id}-desc`, class: "opt-desc",
    text: [o.description, limits.join(", ")].filter(Boolean).join(" — ") }));
  return field;
}

function buildOptions() {
  const command = currentCommand();
  const box = $("options");
  box.replaceChildren();
  $("command").dataset.built = command ? command.key : "";
  $("command-desc").textContent = command ? command.description : "";
  $("composer-error").textContent = "";
  if (!command) return;
  // As in Discord, optional options stay out of the way until asked for.
  const optional = command.options.filter((o) => !o.required);
  for (const o of command.options.filter((o) => o.required)) box.append(optionField(o));
  if (optional.length) {
    const more = el("div", { class: "options" }, ...optional.map(optionField));
    box.append(el("details", { class: "optional-options", open: !command.options.some((o) => o.required) },
      el("summary", { text: `Optional: ${optional.map((o) => o.name).join(", ")}` }), more));
  }
  refreshChoices();
}

function typedValues() {
  const values = {};
  for (const o of (currentCommand() || { options: [] }).options) {
    const input = $(`opt-${o.name}`);
    if (input && o.type !== TYPE.ATTACHMENT && input.value !== "") values[o.name] = input.value;
  }
  return values;
}

async function sendCommand(ev) {
  ev.preventDefault();
  const command = currentCommand();
  if (!command) return;
  const form = new FormData();
  form.append("as", ui.viewer);
  form.append("channel", ui.room);
  form.append("command", command.key);
  let size = 0;
  for (const o of command.options) {
    const input = $(`opt-${o.name}`);
    if (o.type === TYPE.ATTACHMENT && input && input.files && input.files[0]) {
      form.append(o.name, input.files[0], input.files[0].name);
      size += input.files[0].size;
    }
  }
  const limit = ui.state.max_upload;
  if (limit && size > limit) {
    // Not sent at all: the server would refuse it (413) once it had received it all.
    $("composer-error").textContent = `The files are ${formatSize(size)} in all: a command `
      + `takes at most ${formatSize(limit)} of uploads.`;
    return;
  }
  form.append("options", JSON.stringify(typedValues()));
  ui.pressed = null;  // a form the bot opens now answers this command
  const send = $("send");
  send.disabled = true;
  $("composer-error").textContent = "";
  try {
    await post("/api/run", form);
    buildOptions();  // sent: the box is empty again, as in Discord
    $("command").focus();
  } catch (err) {
    $("composer-error").textContent = err.message;
  } finally {
    send.disabled = false;
  }
}

// -- forms (modals) the bot opens -------------------------------------------------------

function renderModal() {
  const dialog = $("modal");
  const modals = ui.state.modals.filter((m) => !ui.closedModals.has(m.interaction_id));
  const shown = modals.find((m) => m.interaction_id === ui.openModal);
  if (ui.openModal && !shown) {
    ui.openModal = null;
    if (dialog.open) {
      dialog.close();
      if (!modals.length) restoreAfterModal();
    }
  }
  if (!ui.openModal && modals.length) showModal(modals[0]);
}

function showModal(modal) {
  if (!$("modal").open && !ui.modalOpener) {
    // The bot opens a form in answer to a button (or a command): that is what focus goes
    // back to when it closes.
    ui.modalOpener = ui.pressed || openerMark();
    ui.pressed = null;
  }
  ui.openModal = modal.interaction_id;
  $("modal-title").textContent = modal.title;
  $("modal-texts").replaceChildren(...modal.texts.map((t) => markdown(t)));
  $("modal-error").textContent = "";
  const fields = $("modal-fields");
  fields.replaceChildren();
  modal.inputs.forEach((input, index) => {
    const id = `modal-input-${index}`;
    const attrs = { id, required: Boolean(input.required), minlength: input.min_length ?? null,
      maxlength: input.max_length ?? null, placeholder: input.placeholder || null,
      dataset: { customId: input.custom_id } };
    const control = input.paragraph ? el("textarea", { ...attrs, rows: 4 })
      : el("input", { ...attrs, type: "text", autocomplete: "off" });
    control.value = input.value || "";
    fields.append(el("div", { class: "field" },
      el("label", { for: id }, el("span", { class: "opt-name", text: input.label || input.custom_id }),
        input.required ? el("span", { class: "required", text: " *" }) : null),
      input.description ? el("small", { class: "opt-desc", text: input.description }) : null,
      control));
  });
  const dialog = $("modal");
  if (!dialog.open) dialog.showModal();
  const first = fields.querySelector("input, textarea");
  if (first) first.focus();
}

function restoreAfterModal() {
  // Back to what opened the form (found again if its message was rendered anew), else
  // to the command box.
  const opener = ui.modalOpener;
  ui.modalOpener = null;
  returnFocus(opener);
}

function closeModal(tellServer) {
  const id = ui.openModal;
  ui.openModal = null;
  if ($("modal").open) {
    $("modal").close();
    restoreAfterModal();
  }
  if (id && tellServer) {
    ui.closedModals.add(id);
    post("/api/modal/close", { as: ui.viewer, interaction_id: id }).catch((err) => toast(err.message));
  }
}

async function submitModal(ev) {
  ev.preventDefault();
  const id = ui.openModal;
  if (!id) return;
  const values = {};
  for (const control of $("modal-fields").querySelectorAll("[data-custom-id]")) {
    values[control.dataset.customId] = control.value;
  }
  $("modal-submit").disabled = true;
  try {
    await post("/api/modal", { as: ui.viewer, interaction_id: id, values });
    ui.closedModals.add(id);
    closeModal(false);
  } catch (err) {
    $("modal-error").textContent = err.message;
  } finally {
    $("modal-submit").disabled = false;
  }
}

// -- navigation and the live channel ----------------------------------------------------

function openRoom(id) {
  if (!roomById(id)) return;
  ui.room = id;
  render();
  $("messages").focus({ preventScroll: true });
}

function setViewer(name) {
  if (name === ui.viewer) return;
  ui.viewer = name;
  closeModal(false);  // a form belongs to whoever it was opened for
  if (ui.ws && ui.ws.readyState === WebSocket.OPEN) {
    ui.ws.send(JSON.stringify({ type: "view", as: name }));
  }
  render();
}

function viewerIsCurrent() {
  const me = ui.state.members.find((m) => m.name === ui.viewer);
  return me && me.id === ui.state.viewer;
}

function render() {
  if (!ui.state) return;
  if (!ui.room || !roomById(ui.room)) {
    const previous = roomById(ui.renderedRoom);
    ui.room = previous && previous.kind === "thread" ? previous.parent.id
      : (ui.state.channels[0] || {}).id || null;
  }
  $("guild-name").textContent = ui.state.guild.name;
  renderViewers();
  renderChannels();
  renderHeader();
  renderMembers();
  renderAbout();
  if (!viewerIsCurrent()) return;  // the push for the member just chosen is on its way
  renderComposer();
  renderMessages();
  renderModal();
  $("app").dataset.viewer = ui.viewer;  // what is shown is this member's view
}

function setConnection(text, live) {
  const node = $("connection");
  node.textContent = text;
  node.classList.toggle("live", live);
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/api/live?as=${encodeURIComponent(ui.viewer)}`);
  ui.ws = ws;
  ws.addEventListener("open", () => { ui.retry = 500; setConnection("live", true); });
  ws.addEventListener("message", (ev) => {
    const data = JSON.parse(ev.data);
    if (data.type === "state") {
      ui.state = data.state;
      render();
    }
  });
  ws.addEventListener("close", () => {
    setConnection("reconnecting…", false);
    ui.retry = Math.min(ui.retry * 2, 5000);
    setTimeout(connect, ui.retry);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("composer").addEventListener("submit", sendCommand);
  $("command").addEventListener("change", buildOptions);
  $("modal-form").addEventListener("submit", submitModal);
  $("modal-cancel").addEventListener("click", () => closeModal(true));
  $("modal").addEventListener("cancel", (ev) => { ev.preventDefault(); closeModal(true); });
  $("back").addEventListener("click", () => {
    const room = roomById(ui.room);
    if (room && room.kind === "thread") openRoom(room.parent.id);
  });
  followNewMessages();
  connect();
});
