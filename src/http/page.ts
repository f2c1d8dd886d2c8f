/**
 * The status page. One renderer, on the server: the page is whole without
 * JavaScript, and with it, `/events` pushes the same renderer's fragment each
 * second, which replaces the live part of the page. Every value that comes
 * from the network goes through escapeHtml, so an instance called
 * `<img src=x onerror=alert(1)>` is shown as text. Nothing is loaded from
 * elsewhere: the page works offline and from the single binary. A `\` that
 * ends a line inside a template joins it to the next: the text has no line
 * break there.
 */
import { COUNTERS } from "../core/stats.ts";
import type { InstanceStatus, Status } from "./status.ts";

export function escapeHtml(value: string | number | boolean): string {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const parts =
    d > 0 ? [`${d}d`, `${h}h`] : h > 0 ? [`${h}h`, `${m}m`] : m > 0 ? [`${m}m`, `${s % 60}s`] : [`${s % 60}s`];
  return parts.join(" ");
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

function instanceRow(i: InstanceStatus, now: number): string {
  const cells: Array<[string, string | number]> = [
    ["Name", i.name],
    ["Version", i.version],
    ["Network", i.address],
    ["Connected for", formatDuration(now - i.connected_at)],
    ["In", i.messages_in],
    ["Out", i.messages_out],
    ["Rate-limited", i.rate_limited],
    ["Dropped", i.dropped],
  ];
  const tds = cells.map(([label, v]) => `<td data-label="${label}">${escapeHtml(v)}</td>`).join("");
  return `<tr data-instance="${escapeHtml(i.id)}">${tds}</tr>`;
}

/** The part of the page that changes: also what `/events` sends. */
export function renderLive(status: Status, nowSeconds = Date.now() / 1000): string {
  const t = status.totals;
  const ok = status.status === "ok";
  const summary = `
<section class="cards" aria-label="Summary">
  <div class="card"><span class="label">Status</span>\
<span class="value ${ok ? "ok" : "warn"}" id="status">${ok ? "running" : "shutting down"}</span></div>
  <div class="card"><span class="label">Instances</span>\
<span class="value" id="connected">${status.connected_instances} / \
${escapeHtml(status.limits.max_instances!)}</span></div>
  <div class="card"><span class="label">Sessions</span><span class="value">${status.sessions.length}</span></div>
  <div class="card"><span class="label">Uptime</span><span class="value">${formatDuration(status.uptime)}</span></div>
  <div class="card"><span class="label">Relayed</span>\
<span class="value">${t.broadcasts} updates, ${t.deliveries} deliveries</span></div>
  <div class="card"><span class="label">Traffic</span>\
<span class="value">in ${formatBytes(t.bytes_in)}, out ${formatBytes(t.bytes_out)}</span></div>
</section>`;
  const sessions =
    status.sessions.length === 0
      ? `<p class="empty">No instances connected. Point a Sova instance at this relay's address and port.</p>`
      : status.sessions
          .map((s) => {
            const rows = status.instances.filter((i) => i.session === s.id).map((i) => instanceRow(i, nowSeconds));
            return `
<section class="session" aria-label="Session ${escapeHtml(s.id)}">
  <h2>Session <code>${escapeHtml(s.id)}</code> \
<span class="count">${s.instances} instance${s.instances === 1 ? "" : "s"}\
${s.history_entries > 0 ? ` · history ${s.history_entries} updates (${formatBytes(s.history_bytes)})` : ""}</span></h2>
  <table>
    <thead><tr><th>Name</th><th>Version</th><th>Network</th>\
<th>Connected for</th><th>In</th><th>Out</th><th>Rate-limited</th><th>Dropped</th></tr></thead>
    <tbody>${rows.join("")}</tbody>
  </table>
</section>`;
          })
          .join("");
  return `${summary}${sessions}`;
}

const STYLE = `
:root { color-scheme: light dark; --bg: #f6f5f2; --fg: #1d1d1f; --muted: #6b6b70; \
--card: #fff; --line: #e2e0da; --ok: #1f7a3a; --warn: #b3401a; --accent: #5b3fd1; }
@media (prefers-color-scheme: dark) { :root { --bg: #141416; --fg: #ececef; --muted: #9a9aa3; \
--card: #1e1e22; --line: #2d2d33; --ok: #5fd38a; --warn: #ff8a5c; --accent: #a793ff; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; \
background: var(--bg); color: var(--fg); }
header, main, footer { max-width: 1100px; margin: 0 auto; padding: 16px; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 8px 16px; }
h1 { font-size: 22px; margin: 0; } h1 span { color: var(--accent); }
.meta { color: var(--muted); font-size: 13px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: 10px; margin-bottom: 20px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 10px 12px; \
display: flex; flex-direction: column; }
.label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.value { font-size: 17px; font-weight: 600; overflow-wrap: anywhere; } \
.ok { color: var(--ok); } .warn { color: var(--warn); }
.session { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 12px; \
margin-bottom: 14px; }
.session h2 { font-size: 16px; margin: 0 0 8px; } .count { color: var(--muted); font-weight: 400; font-size: 13px; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); overflow-wrap: anywhere; }
th { color: var(--muted); font-weight: 500; font-size: 12px; }
.empty { color: var(--muted); }
details { margin-top: 16px; } dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; }
dt { color: var(--muted); } dd { margin: 0; }
#live-state { font-size: 12px; color: var(--muted); }
@media (max-width: 640px) {
  thead { display: none; }
  tr { display: block; border-bottom: 1px solid var(--line); padding: 6px 0; }
  td { display: flex; justify-content: space-between; border: 0; padding: 2px 4px; }
  td::before { content: attr(data-label); color: var(--muted); margin-right: 12px; }
}`;

// Replaces the live part with the server's fragment; the fragment is escaped there.
const SCRIPT = `
(() => {
  const live = document.getElementById("live");
  const state = document.getElementById("live-state");
  if (!window.EventSource || !live) return;
  const source = new EventSource("/events");
  source.addEventListener("status", (e) => { live.innerHTML = JSON.parse(e.data); state.textContent = "live"; });
  source.onerror = () => { state.textContent = "reconnecting…"; };
})();`;

/** For the Content-Security-Policy: the one script the page runs, by its hash. */
export const SCRIPT_HASH = `sha256-${new Bun.CryptoHasher("sha256").update(SCRIPT).digest("base64")}`;

/** Every counter of the one table, as its help text says it; counts by reason or type inline. */
function renderCounters(status: Status): string {
  return Object.values(COUNTERS)
    .map((spec) => {
      const value = status.totals[spec.status as keyof Status["totals"]] as number | Record<string, number>;
      const shown =
        typeof value === "number"
          ? String(value)
          : Object.entries(value)
              .map(([k, v]) => `${k} ${v}`)
              .join(", ") || "0";
      return (
        `<dt>${escapeHtml(spec.help.replace(/\.$/, ""))}</dt>` +
        `<dd data-counter="${spec.status}">${escapeHtml(shown)}</dd>`
      );
    })
    .join("");
}

export function renderPage(status: Status): string {
  const limits = Object.entries(status.limits)
    .map(([k, v]) => `<dt>${escapeHtml(k.replace(/_/g, " "))}</dt><dd>${escapeHtml(v)}</dd>`)
    .join("");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sova-relay ${escapeHtml(status.version)}</title>
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>sova<span>-relay</span></h1>
  <span class="meta">version ${escapeHtml(status.version)} · commit ${escapeHtml(status.commit)} \
· ${escapeHtml(status.target)} · <span id="live-state">snapshot</span> \
· <a href="/status">JSON</a> · <a href="/metrics">metrics</a></span>
</header>
<main>
  <div id="live">${renderLive(status)}</div>
  <details>
    <summary>Limits</summary>
    <dl>${limits}</dl>
  </details>
  <details>
    <summary>Counters (since start)</summary>
    <dl>${renderCounters(status)}</dl>
  </details>
  <noscript><p class="meta">This page shows a snapshot; <a href="/">reload</a> for a fresh one, \
or enable JavaScript for live updates.</p></noscript>
</main>
<script>${SCRIPT}</script>
</body>
</html>`;
}
