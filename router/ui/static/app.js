// The status page's script: polls /ui/data and draws tables and SVG charts. No libraries.
"use strict";
(function () {
  const COLORS = ["#2e90fa", "#f79009", "#12b76a", "#9e77ed", "#f04438", "#0ba5ec", "#667085"];
  const key = new URLSearchParams(location.search).get("key");
  const $ = (id) => document.getElementById(id);
  const colorOf = {};
  const color = (name) => {
    if (!(name in colorOf)) colorOf[name] = COLORS[Object.keys(colorOf).length % COLORS.length];
    return colorOf[name];
  };
  const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const num = (v) => (v == null ? "–" : Math.round(v).toLocaleString("en-US"));
  const pct = (v) => (v == null ? "–" : (100 * v).toFixed(1) + "%");
  const usd = (v) => (v == null ? "–" : "$" + (Math.abs(v) < 1 ? v.toFixed(4) : v.toFixed(2)));
  const ms = (s) => (s == null ? "–" : (1000 * s).toFixed(s < 0.01 ? 2 : 1) + " ms");
  const time = (t) => new Date(t * 1000).toLocaleTimeString([], { hour12: false });
  const cut = (text, n) => (text && text.length > n ? text.slice(0, n - 1) + "…" : text);
  const dateTime = (t) => new Date(t * 1000).toLocaleString();

  function table(id, head, rows) {
    const th = head.map(([label, cls]) => `<th class="${cls || ""}">${esc(label)}</th>`);
    $(id).innerHTML = `<thead><tr>${th.join("")}</tr></thead><tbody>${rows.join("")}</tbody>`;
  }

  function shareBars(id, counts, kind) {
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    const names = Object.keys(counts).filter((k) => counts[k] > 0).sort((a, b) => counts[b] - counts[a]);
    if (!names.length) { $(id).innerHTML = '<p class="muted">no requests in this window</p>'; return; }
    $(id).innerHTML = names.map((name) => {
      const share = counts[name] / total;
      return `<div class="bar" data-${kind}="${esc(name)}"><span class="label">${esc(name)}</span>` +
        `<span class="track"><i style="width:${(100 * share).toFixed(1)}%;background:${color(name)}"></i></span>` +
        `<span class="value"><span class="count">${num(counts[name])}</span> · ${pct(share)}</span></div>`;
    }).join("");
  }

  function timeline(tl) {
    const svg = $("timeline"), w = 1000, h = 160, n = tl.points.length;
    const totals = tl.points.map((p) => Object.values(p).reduce((a, b) => a + b, 0));
    const max = Math.max(1, ...totals), bw = w / n;
    const parts = [];
    tl.points.forEach((p, i) => {
      let y = h;
      for (const route of tl.routes) {
        const v = p[route] || 0;
        if (!v) continue;
        const bh = (v / max) * (h - 12);
        y -= bh;
        parts.push(`<rect x="${i * bw + 1}" y="${y}" width="${bw - 2}" height="${bh}" fill="${color(route)}"><title>${esc(route)}: ${num(v)} at ${time(tl.start + (i + 1) * tl.step)}</title></rect>`);
      }
    });
    parts.push(`<text x="4" y="11" font-size="11" fill="#667085">max ${num(max)} per ${Math.round(tl.step)} s</text>`);
    svg.innerHTML = parts.join("");
    $("timeline-legend").innerHTML = tl.routes.map((r) => `<span><i style="background:${color(r)}"></i>${esc(r)}</span>`).join("");
  }

  function render(d) {
    const p = d.policy, proc = d.process;
    $("policy").textContent = `policy ${p.source} · loaded ${dateTime(p.loaded_at)}${p.demo ? " · DEMO upstreams" : ""}`;
    $("updated").textContent = "updated " + time(d.now);
    const since = d.since ? `since ${time(d.since)}` : "";
    $("scope").textContent = (proc.workers > 1 || proc.multiprocess
      ? `This page shows ONE worker process (pid ${proc.pid}) of ${proc.workers}; each reload may land on another. /metrics adds all workers up. `
      : `This page shows one process (pid ${proc.pid}). With several replicas, each has its own page; Prometheus (/metrics) sees them all. `) +
      `Window ${Math.round(d.window_s / 60)} min ${since}; counters sampled every ${proc.sample_every_s} s.`;

    const t = d.totals, s = d.savings, c = d.cache;
    $("total-requests").textContent = num(t.requests);
    $("total-errors").textContent = num(t.errors);
    $("saved-usd").textContent = usd(s.saved_usd) + (s.saved_share == null ? "" : ` (${pct(s.saved_share)})`);
    $("cost-usd").textContent = usd(s.cost_usd);
    $("top-usd").textContent = usd(s.all_top_usd);
    const top = d.upstreams.slice().sort((a, b) => (b.price.input + b.price.output) - (a.price.input + a.price.output))[0];
    if (top) $("top-name").textContent = top.name;
    $("cache-hit-rate").textContent = c.enabled ? pct(c.hit_rate) : "off";
    $("cache-hits").textContent = num(c.hits);
    $("cache-misses").textContent = num(c.misses);
    $("cache-saved").textContent = usd(c.saved_usd);
    $("overhead").textContent = `${ms(d.overhead_s.p50)} / ${ms(d.overhead_s.p99)}`;

    timeline(d.timeline);
    shareBars("share-route", t.by_route, "route");
    shareBars("share-rule", t.by_rule, "rule");

    table("upstreams", [["upstream"], ["model"], ["requests", "n"], ["5xx", "n"], ["failed attempts", "n"],
      ["error rate", "n"], ["p50", "n"], ["p90", "n"], ["p99", "n"], ["spent", "n"], ["breaker"]],
      d.upstreams.map((u) => `<tr data-upstream="${esc(u.name)}"><td>${esc(u.name)}</td><td>${esc(u.model)}</td>` +
        `<td class="n requests">${num(u.requests)}</td><td class="n">${num(u.errors)}</td><td class="n">${num(u.failed_attempts)}</td>` +
        `<td class="n">${pct(u.error_rate)}</td><td class="n">${ms(u.latency_s.p50)}</td><td class="n">${ms(u.latency_s.p90)}</td>` +
        `<td class="n">${ms(u.latency_s.p99)}</td><td class="n">${usd(u.cost_usd)}</td>` +
        `<td><span class="pill ${esc(u.breaker)}">${esc(u.breaker)}</span></td></tr>`).concat(
        (t.by_route.cache ? [`<tr data-upstream="cache"><td>cache</td><td class="muted">answers from the cache</td><td class="n requests">${num(t.by_route.cache)}</td><td colspan="8"></td></tr>`] : [])));

    table("routes", [["rule"], ["targets"], ["requests", "n"], ["rollout"], ["shadow"], ["cache"]],
      d.routes.map((r) => {
        const ro = r.rollout ? `${r.rollout.percent}% to ${esc(r.rollout.target)} (sticky ${esc(r.rollout.sticky)}); last decisions: ${r.rollout.recent.in} in, ${r.rollout.recent.out} out` : '<span class="muted">–</span>';
        const sh = r.shadow ? `${r.shadow.percent}% to ${esc(r.shadow.target)}: ` + (Object.entries(r.shadow.outcomes).map(([k, v]) => `${num(v)} ${esc(k)}`).join(", ") || "none yet") : '<span class="muted">–</span>';
        return `<tr data-rule="${esc(r.name)}"><td>${esc(r.name)}</td><td>${[r.target, ...r.fallbacks].map(esc).join(" → ")}</td>` +
          `<td class="n requests">${num(r.requests)}</td><td>${ro}</td><td>${sh}</td><td>${r.cache ? "on" : "off"}</td></tr>`;
      }));

    $("budgets-section").hidden = !d.budgets.length;
    table("budgets", [["tenant"], ["today", "n"], ["daily cap", "n"], ["month", "n"], ["monthly cap", "n"]],
      d.budgets.map((b) => {
        const use = (spent, cap) => usd(spent) + (cap ? ` <span class="muted">(${pct(spent / cap)})</span>` : "");
        return b.error ? `<tr><td>${esc(b.tenant)}</td><td colspan="4" class="muted">unavailable: ${esc(b.error)}</td></tr>`
          : `<tr data-tenant="${esc(b.tenant)}"><td>${esc(b.tenant)}</td><td class="n">${use(b.daily_usd, b.daily_cap)}</td><td class="n">${usd(b.daily_cap)}</td>` +
            `<td class="n">${use(b.monthly_usd, b.monthly_cap)}</td><td class="n">${usd(b.monthly_cap)}</td></tr>`;
      }));

    const calls = Object.entries(t.calls).filter(([, byUp]) => Object.values(byUp).some((v) => v > 0));
    $("calls-section").hidden = !calls.length;
    table("calls", [["endpoint"], ["upstreams"]], calls.map(([ep, byUp]) =>
      `<tr><td>${esc(ep)}</td><td>${Object.entries(byUp).filter(([, v]) => v > 0).map(([u, v]) => `${esc(u)}: ${num(v)}`).join(", ")}</td></tr>`));

    $("prompts-note").textContent = p.records_prompts ? "(prompts shown: the policy records them)" : "(prompts not recorded by the policy)";
    const withText = p.records_prompts;
    table("decisions", [["time"], ["tenant"], ["rule"], ["route"], ["status", "n"], ["cache"], ["score", "n"],
      ["rollout"], ["latency", "n"], ["overhead", "n"], ["cost", "n"]].concat(withText ? [["prompt"], ["answer"]] : []),
      d.decisions.map((r) => `<tr data-request="${esc(r.request_id)}"><td>${time(r.ts)}</td><td>${esc(r.tenant)}</td><td>${esc(r.rule)}</td>` +
        `<td>${esc(r.route ?? "–")}${r.tried && r.tried.length ? ` <span class="muted">(failed: ${r.tried.map(esc).join(", ")})</span>` : ""}</td>` +
        `<td class="n">${esc(r.status)}</td><td>${esc(r.cache)}</td><td class="n">${r.score == null ? "–" : r.score.toFixed(3)}</td>` +
        `<td>${esc(r.rollout ?? "")}</td><td class="n">${r.latency_ms == null ? "–" : r.latency_ms.toFixed(1) + " ms"}</td>` +
        `<td class="n">${r.overhead_ms == null ? "–" : r.overhead_ms.toFixed(1) + " ms"}</td><td class="n">${usd(r.cost_usd)}</td>` +
        (withText ? `<td class="text" title="${esc(r.prompt)}">${esc(cut(r.prompt, 60))}</td><td class="text" title="${esc(r.answer)}">${esc(cut(r.answer, 60))}</td>` : "") + "</tr>"));
    document.body.dataset.rendered = String(d.now);
  }

  async function refresh() {
    const url = "/ui/data?window=" + $("window").value;
    try {
      const res = await fetch(url, { headers: key ? { "x-admin-key": key } : {}, cache: "no-store" });
      if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
      render(await res.json());
      $("failure").hidden = true;
    } catch (err) {
      $("failure").textContent = "Could not refresh: " + err.message;
      $("failure").hidden = false;
    }
  }

  const asked = new URLSearchParams(location.search).get("window");
  if (asked && [...$("window").options].some((o) => o.value === asked)) $("window").value = asked;
  $("window").addEventListener("change", refresh);
  refresh();
  setInterval(refresh, 5000);
})();
