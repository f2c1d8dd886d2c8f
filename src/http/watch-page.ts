/**
 * The spectator page (/watch/KEY): the session's players, Sova's grid (one column
 * per line, one cell per frame) and a feed of edits and chat. The first view is
 * rendered here, whole without JavaScript; the page's one script then follows
 * /watch/KEY/events and redraws the lines that changed, building elements with
 * textContent only, so a script or a name that holds markup stays text, and controls
 * that would act on what is shown (NUL, ESC, bidi overrides) show as escapes. Nothing is
 * loaded from elsewhere, and the Content-Security-Policy is the status page's:
 * no script but this one (by its hash), no connections but to this relay.
 *
 * The markup below and the script's builders make the same elements, with the
 * same classes: change one, change the other (the browser test compares them).
 */
import { type Cell, FEED_SIZE, type FeedEntry, type LineView, type Player, type View } from "../watch/index.ts";
import { escapeHtml } from "./page.ts";

export interface PageOptions {
  projector: boolean;
  /** The session as /status names it (its short hash, or "open"). */
  session: string;
}

const fmt = (x: number | string | null | undefined): string => (x === null || x === undefined ? "?" : String(x));

/**
 * What in players' text would act instead of showing: C0 and C1 controls but tab and line feed (a NUL, an ESC,
 * a lone CR) and the bidi controls (U+061C, U+200E/F, U+202A-202E, U+2066-2069), whose overrides can make code or
 * chat read backwards to the audience. Both this file and the page's script show each as its `\uXXXX`, as the
 * logs do; a CR before a line feed is only a line end (a script from Windows).
 */
const HIDDEN = String.raw`\r(?!\n)|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]`;
const HIDDEN_RE = new RegExp(HIDDEN, "g");

/** Players' `text` as the page shows it: every character in HIDDEN made visible as its escape. */
export function shown(text: string): string {
  return text
    .replace(/\r\n/g, "\n")
    .replace(HIDDEN_RE, (c) => `\\u${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}`);
}

/** Text from the network, for the markup: made visible, then escaped. */
const text = (x: string | number): string => escapeHtml(shown(String(x)));

/** Said above the grid when it is not the whole truth. */
const BANNERS = {
  capped:
    "This session's scene is larger than the relay keeps for spectators: only the feed is shown until the next scene load.",
  stale: "Some edits were not shown while the relay was busy: the grid may be out of date until the next scene load.",
  unknown:
    "The relay has not seen this session's scene yet (it learns it when a player loads one): cells appear as they are edited.",
};

function cellHtml(c: Cell, line: LineView, frame: number, view: View): string {
  const known = Object.keys(c).some((k) => k !== "by");
  const outside =
    line.complete && ((line.start != null && frame < line.start) || (line.end != null && frame > line.end));
  const last = view.last?.line === line.index && view.last.frame === frame;
  const classes = [
    "cell",
    known ? "" : "unknown",
    c.enabled === false ? "muted" : "",
    outside ? "outside" : "",
    last ? "last" : "",
  ]
    .filter(Boolean)
    .join(" ");
  const style = last ? ` style="--who: ${view.last!.colour}"` : "";
  const title = c.by ? ` title="last changed by ${text(c.by)}"` : "";
  if (!known)
    return `<div class="${classes}" id="cell-${line.index}-${frame}"${title}><span class="fname">F${frame}</span><span class="nothing">not seen yet</span></div>`;
  // No name shows the frame's number; an empty name (not the same in Sova) shows as "".
  const name = c.name === undefined ? "?" : c.name === null ? `F${frame}` : c.name === "" ? `F${frame} ""` : c.name;
  const head =
    `<div class="cell-head"><span class="fname">${text(name)}</span>` +
    `<span class="dur">${text(fmt(c.duration))} b</span>` +
    `<span class="rep">×${text(fmt(c.repetitions))}</span>` +
    `<span class="lang">${text(fmt(c.lang))}</span>` +
    `${c.enabled === false ? '<span class="mute">muted</span>' : ""}</div>`;
  const script =
    c.script === undefined
      ? '<pre class="script nothing">script not seen yet</pre>'
      : `<pre class="script">${text(c.script)}</pre>`;
  const by = last ? `<span class="by">${text(view.last!.by)}</span>` : "";
  return `<div class="${classes}" id="cell-${line.index}-${frame}"${style}${title}>${head}${script}${by}</div>`;
}

function lineHead(line: LineView): string {
  const loop =
    line.start == null && line.end == null
      ? line.complete
        ? "whole line"
        : "loop ?"
      : `loop ${line.start ?? 0}–${line.end ?? "end"}`;
  const length = line.beats === null ? "? beats" : `${fmt(line.beats)} beats${line.length != null ? " (set)" : ""}`;
  return (
    `<header class="line-head"><b>Line ${line.index}</b> <span>×${text(fmt(line.speed))}</span> ` +
    `<span>${text(loop)}</span> <span>${text(length)}</span>` +
    `${line.complete ? "" : ' <span class="partial">partly seen</span>'}</header>`
  );
}

function lineHtml(line: LineView, view: View): string {
  const cells = line.frames.map((c, i) => cellHtml(c, line, i, view)).join("");
  return `<section class="line" id="line-${line.index}" data-line="${line.index}">${lineHead(line)}${cells}</section>`;
}

function feedItem(e: FeedEntry, colours: Map<string, string>): string {
  const time = new Date(e.at).toISOString();
  const who = e.by === "" ? "relay" : e.by;
  const colour = colours.get(e.by);
  return (
    `<li class="entry ${text(e.kind === "Chat" ? "chat" : e.kind === "unreadable" || e.kind === "skipped" ? "odd" : "edit")}" data-seq="${e.seq}">` +
    `<time datetime="${time}">${time.slice(11, 19)}</time> ` +
    `<b class="who"${colour ? ` style="color: ${colour}"` : ""}>${text(who)}</b> ` +
    `<span class="text">${text(e.text)}</span>` +
    `${e.when ? ` <span class="when">${text(e.when)}</span>` : ""}</li>`
  );
}

function playerChip(p: Player): string {
  const doing = p.editing ? ` editing L${p.editing.line} F${p.editing.frame}` : "";
  return (
    `<li class="player${p.present ? "" : " gone"}" style="--who: ${p.colour}">` +
    `<span class="dot"></span><span class="pname">${text(p.name)}</span>` +
    `<span class="doing">${text(doing)}</span></li>`
  );
}

function banner(view: View): string {
  return view.capped ? BANNERS.capped : view.stale ? BANNERS.stale : !view.known ? BANNERS.unknown : "";
}

export function renderWatchBody(view: View): { players: string; banner: string; grid: string; feed: string } {
  const colours = new Map(view.players.map((p) => [p.name, p.colour]));
  return {
    players: view.players.map(playerChip).join(""),
    banner: escapeHtml(banner(view)),
    grid: view.lines.map((l) => lineHtml(l, view)).join(""),
    feed: view.feed
      .slice()
      .reverse()
      .map((e) => feedItem(e, colours))
      .join(""),
  };
}

const STYLE = `
:root { color-scheme: light dark; --bg: #f6f5f2; --fg: #1d1d1f; --muted: #6b6b70; --card: #fff; --line: #e2e0da; \
--accent: #5b3fd1; --cell: 220px; --code: 12px; }
@media (prefers-color-scheme: dark) { :root { --bg: #141416; --fg: #ececef; --muted: #9a9aa3; --card: #1e1e22; \
--line: #2d2d33; --accent: #a793ff; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg); color: var(--fg); }
header.top, .note, #players, #banner, main { padding: 0 16px; }
header.top { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 16px; padding-top: 12px; }
h1 { font-size: 20px; margin: 0; } h1 span { color: var(--accent); }
.meta, .note { color: var(--muted); font-size: 13px; } .note { margin: 4px 0 8px; }
#players { list-style: none; display: flex; flex-wrap: wrap; gap: 6px; margin: 0 0 8px; }
.player { display: flex; align-items: center; gap: 6px; background: var(--card); border: 1px solid var(--line); \
border-radius: 999px; padding: 2px 10px; } .player.gone { opacity: .5; }
.dot { width: 10px; height: 10px; border-radius: 50%; background: var(--who); }
.doing { color: var(--muted); font-size: 12px; }
#banner:not(:empty) { margin: 0 16px 8px; padding: 6px 10px; border-radius: 8px; background: var(--card); \
border: 1px dashed var(--muted); color: var(--muted); font-size: 13px; }
main { display: grid; grid-template-columns: minmax(0, 1fr) 320px; gap: 12px; padding-bottom: 16px; }
.grid-wrap { overflow-x: auto; min-width: 0; }
.grid { display: flex; gap: 8px; align-items: flex-start; }
.line { flex: 0 0 var(--cell); display: flex; flex-direction: column; gap: 6px; }
.line-head { font-size: 12px; color: var(--muted); display: flex; flex-wrap: wrap; gap: 2px 6px; }
.line-head b { color: var(--fg); } .partial { font-style: italic; }
.cell { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 6px 8px; \
position: relative; overflow: hidden; }
.cell.muted { opacity: .55; } .cell.outside { filter: grayscale(1); opacity: .6; }
.cell.unknown { border-style: dashed; color: var(--muted); }
.cell.last { border: 2px solid var(--who); box-shadow: 0 0 0 3px color-mix(in srgb, var(--who) 25%, transparent); }
.cell-head { display: flex; flex-wrap: wrap; gap: 2px 8px; font-size: 12px; color: var(--muted); }
.fname { color: var(--fg); font-weight: 600; overflow-wrap: anywhere; } .mute { color: #b3401a; }
.script { margin: 4px 0 0; font: var(--code)/1.35 ui-monospace, "SF Mono", Menlo, Consolas, monospace; \
white-space: pre-wrap; overflow-wrap: anywhere; max-height: 12em; overflow: auto; }
.nothing { color: var(--muted); font-style: italic; font-size: 12px; display: block; }
.by { position: absolute; right: 6px; bottom: 4px; font-size: 11px; color: var(--who); font-weight: 600; }
aside h2 { font-size: 14px; margin: 0 0 6px; }
#feed { list-style: none; margin: 0; padding: 0; max-height: 80vh; overflow: auto; font-size: 13px; }
.entry { padding: 4px 0; border-bottom: 1px solid var(--line); overflow-wrap: anywhere; white-space: pre-wrap; }
.entry time, .when { color: var(--muted); font-size: 12px; } .entry.chat .text { font-weight: 600; }
.entry.odd .text { color: var(--muted); font-style: italic; }
body.projector { font-size: 22px; --cell: 340px; --code: 19px; }
body.projector .cell-head, body.projector .line-head { font-size: 18px; }
body.projector .script { max-height: none; } body.projector .note { display: none; }
body.projector #feed { font-size: 18px; max-height: 88vh; } body.projector main { grid-template-columns: minmax(0, 1fr) 400px; }
@media (max-width: 760px) { main { grid-template-columns: minmax(0, 1fr); } #feed { max-height: 50vh; } }`;

// Redraws from the server's JSON with textContent: no markup from the network is ever parsed.
const SCRIPT = `
(() => {
  const $ = (id) => document.getElementById(id);
  const body = document.body, grid = $("grid"), feed = $("feed"), players = $("players"), banner = $("banner");
  const state = $("live-state"), toggle = $("projector");
  const colours = new Map();
  let lastSeq = Number(body.dataset.seq || 0);
  const hidden = new RegExp(${JSON.stringify(HIDDEN)}, "g");
  const shown = (x) => String(x).replace(/\\r\\n/g, "\\n").replace(hidden, (c) => "\\\\u" + \
c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0"));
  const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; \
if (text !== undefined) e.textContent = shown(text); return e; };
  const fmt = (x) => (x === null || x === undefined ? "?" : String(x));
  const clock = (t) => { t.textContent = new Date(t.dateTime).toLocaleTimeString(); };
  document.querySelectorAll("#feed time").forEach(clock);
  toggle.addEventListener("click", (e) => {
    e.preventDefault();
    body.classList.toggle("projector");
    const url = new URL(location.href);
    if (body.classList.contains("projector")) url.searchParams.set("projector", "1"); else url.searchParams.delete("projector");
    history.replaceState(null, "", url);
    follow(current);
  });
  let current = null;
  function cell(c, line, i, last) {
    const known = Object.keys(c).some((k) => k !== "by");
    const outside = line.complete && ((line.start != null && i < line.start) || (line.end != null && i > line.end));
    const isLast = last && last.line === line.index && last.frame === i;
    const d = el("div", ["cell", known ? "" : "unknown", c.enabled === false ? "muted" : "", outside ? "outside" : "", \
isLast ? "last" : ""].filter(Boolean).join(" "));
    d.id = "cell-" + line.index + "-" + i;
    if (isLast) d.style.setProperty("--who", last.colour);
    if (c.by) d.title = "last changed by " + shown(c.by);
    if (!known) { d.append(el("span", "fname", "F" + i), el("span", "nothing", "not seen yet")); return d; }
    const head = el("div", "cell-head");
    head.append(el("span", "fname", c.name === undefined ? "?" : c.name === null ? "F" + i : c.name === "" ? "F" + i + ' ""' : c.name), \
el("span", "dur", fmt(c.duration) + " b"), el("span", "rep", "×" + fmt(c.repetitions)), el("span", "lang", fmt(c.lang)));
    if (c.enabled === false) head.append(el("span", "mute", "muted"));
    d.append(head, c.script === undefined ? el("pre", "script nothing", "script not seen yet") : el("pre", "script", c.script));
    if (isLast) d.append(el("span", "by", last.by));
    return d;
  }
  function line(l, last) {
    const s = el("section", "line"); s.id = "line-" + l.index; s.dataset.line = l.index;
    const h = el("header", "line-head");
    const loop = l.start == null && l.end == null ? (l.complete ? "whole line" : "loop ?") : \
"loop " + (l.start ?? 0) + "–" + (l.end ?? "end");
    const len = l.beats === null ? "? beats" : fmt(l.beats) + " beats" + (l.length != null ? " (set)" : "");
    h.append(el("b", "", "Line " + l.index), " ", el("span", "", "×" + fmt(l.speed)), " ", el("span", "", loop), " ", \
el("span", "", len));
    if (!l.complete) h.append(" ", el("span", "partial", "partly seen"));
    s.append(h, ...l.frames.map((c, i) => cell(c, l, i, last)));
    return s;
  }
  function entry(e) {
    const li = el("li", "entry " + (e.kind === "Chat" ? "chat" : e.kind === "unreadable" || e.kind === "skipped" ? "odd" : "edit"));
    li.dataset.seq = e.seq;
    const t = el("time"); t.dateTime = new Date(e.at).toISOString(); clock(t);
    const who = el("b", "who", e.by === "" ? "relay" : e.by);
    if (colours.has(e.by)) who.style.color = colours.get(e.by);
    li.append(t, " ", who, " ", el("span", "text", e.text));
    if (e.when) li.append(" ", el("span", "when", e.when));
    return li;
  }
  function chip(p) {
    const li = el("li", "player" + (p.present ? "" : " gone")); li.style.setProperty("--who", p.colour);
    li.append(el("span", "dot"), el("span", "pname", p.name), \
el("span", "doing", p.editing ? " editing L" + p.editing.line + " F" + p.editing.frame : ""));
    return li;
  }
  function follow(last) {
    if (!last || !body.classList.contains("projector")) return;
    const target = $("cell-" + last.line + "-" + (last.frame ?? 0)) || $("line-" + last.line);
    if (target) target.scrollIntoView({ block: "center", inline: "center", behavior: "smooth" });
  }
  function apply(v, whole) {
    colours.clear(); for (const p of v.players) colours.set(p.name, p.colour);
    players.replaceChildren(...v.players.map(chip));
    const words = ${JSON.stringify(BANNERS)};
    banner.textContent = v.capped ? words.capped : v.stale ? words.stale : !v.known ? words.unknown : "";
    const prev = current; current = v.last;
    if (whole) grid.replaceChildren();
    for (const l of v.lines) { const old = $("line-" + l.index); const n = line(l, v.last); \
if (old) old.replaceWith(n); else grid.append(n); }
    for (const s of [...grid.children]) if (Number(s.dataset.line) >= v.lineCount) s.remove();
    const mark = current ? "cell-" + current.line + "-" + current.frame : "";
    for (const c of grid.querySelectorAll(".cell.last")) if (c.id !== mark) { c.classList.remove("last"); \
c.style.removeProperty("--who"); c.querySelector(".by")?.remove(); }
    const c = mark && $(mark);
    if (c && !c.classList.contains("last")) { c.classList.add("last"); c.style.setProperty("--who", current.colour); \
c.append(el("span", "by", current.by)); }
    if (whole) { feed.replaceChildren(); lastSeq = 0; }
    if (v.gap) feed.prepend(el("li", "entry odd", "… earlier entries not shown"));
    for (const e of v.feed) if (e.seq > lastSeq) { feed.prepend(entry(e)); lastSeq = e.seq; }
    while (feed.children.length > ${FEED_SIZE}) feed.lastElementChild.remove();
    if (v.last && (!prev || prev.line !== v.last.line || prev.frame !== v.last.frame || v.lines.length)) follow(v.last);
  }
  if (!window.EventSource) return;
  const url = location.pathname.replace(/\\/$/, "") + "/events?since=" + encodeURIComponent(body.dataset.since);
  const source = new EventSource(url);
  source.addEventListener("snapshot", (e) => { apply(JSON.parse(e.data), true); state.textContent = "live"; });
  source.addEventListener("delta", (e) => { apply(JSON.parse(e.data), false); state.textContent = "live"; });
  source.onopen = () => { state.textContent = "live"; };
  source.onerror = () => { state.textContent = "reconnecting…"; };
  current = JSON.parse(body.dataset.last || "null");
  follow(current);
})();`;

/** For the Content-Security-Policy: the page's one script, by its hash. */
export const WATCH_SCRIPT_HASH = `sha256-${new Bun.CryptoHasher("sha256").update(SCRIPT).digest("base64")}`;

/** The status page's policy, with this page's script. */
export const WATCH_CSP =
  `default-src 'none'; style-src 'unsafe-inline'; script-src '${WATCH_SCRIPT_HASH}';` +
  ` connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;

export function renderWatchPage(view: View, options: PageOptions): string {
  const b = renderWatchBody(view);
  const seq = view.feed.at(-1)?.seq ?? 0;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Watching a Sova session</title>
<style>${STYLE}</style>
</head>
<body class="watch${options.projector ? " projector" : ""}" data-since="${escapeHtml(view.id)}" data-seq="${seq}" \
data-last="${escapeHtml(JSON.stringify(view.last))}">
<header class="top">
  <h1>sova<span>-relay</span> · watching</h1>
  <span class="meta">session <code>${escapeHtml(options.session)}</code> · <span id="live-state">snapshot</span> · \
<a href="?projector=${options.projector ? "0" : "1"}" id="projector">projector mode</a></span>
</header>
<p class="note">What the players sent, as they intended it: edits show as soon as they are sent, before any player's \
Sova applies them, deferred ones (end of loop, at a beat) included; changes a player makes without the relay are not seen. \
Chat is shown too.</p>
<ul id="players" aria-label="Players">${b.players}</ul>
<div id="banner" role="status">${b.banner}</div>
<main>
  <div class="grid-wrap"><div id="grid" class="grid" aria-label="The scene: one column per line">${b.grid}</div></div>
  <aside><h2>Edits and chat</h2><ol id="feed">${b.feed}</ol></aside>
</main>
<noscript><p class="note">This is a snapshot; reload for a fresh one, or enable JavaScript to follow live.</p></noscript>
<script>${SCRIPT}</script>
</body>
</html>`;
}
