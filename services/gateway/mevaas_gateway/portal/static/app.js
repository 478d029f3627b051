// The portal's script: no build step, no dependencies. Every figure comes from the HTTP/JSON API
// (/v1/...), with the session cookie; mutating calls echo the CSRF cookie (double submit).
"use strict";

const body = document.body;
const SLUG = body.dataset.slug;
const $ = (sel) => document.querySelector(sel);
let me = null; // {slug, tenant_id, roles}
let alerts = []; // live alerts received since the page loaded, newest first
let unseen = 0;
let source = null;

// ---- the API ---------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(body.message || `HTTP ${status}`);
    this.status = status;
    this.code = body.status || "";
    this.violations = [];
    for (const d of body.details || []) for (const v of d.fieldViolations || []) this.violations.push(v);
  }
}

function cookie(name) {
  const hit = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return hit ? decodeURIComponent(hit.slice(name.length + 1)) : "";
}

async function call(service, method, request = {}) {
  const reply = await fetch(`/v1/${service}/${method}`, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": cookie("mevaas_csrf") },
    body: JSON.stringify(request),
  });
  const data = await reply.json().catch(() => ({}));
  if (!reply.ok) throw new ApiError(reply.status, data);
  learnSymbols(data);
  return data;
}

// Token symbols seen in any reply, by chain and address: some replies name a token by address
// only (PnL denominations), and the same token's symbol is known from another (its executions).
const symbols = new Map();
const tokenKey = (t) => `${t.chainId}:${String(t.address).toLowerCase()}`;

function learnSymbols(value) {
  if (Array.isArray(value)) value.forEach(learnSymbols);
  else if (value && typeof value === "object") {
    if (typeof value.address === "string" && value.chainId && value.symbol) symbols.set(tokenKey(value), value.symbol);
    Object.values(value).forEach(learnSymbols);
  }
}

const S = {
  tenant: "mevaas.tenancy.v1.TenantService",
  strategy: "mevaas.strategy.v1.StrategyService",
  risk: "mevaas.risk.v1.RiskService",
  execution: "mevaas.execution.v1.ExecutionService",
  analytics: "mevaas.analytics.v1.AnalyticsService",
  portfolio: "mevaas.portfolio.v1.PortfolioService",
};

// ---- human units -----------------------------------------------------------------------------

function units(amount, token, maxFraction = 6) {
  // Integer base units -> decimal string in whole tokens, with the token's symbol (exact: BigInt).
  if (amount === undefined || amount === null || amount === "") return "—";
  const decimals = Number((token && token.decimals) || 0);
  const symbol = (token && (token.symbol || symbols.get(tokenKey(token)))) || "(unknown token)";
  let n = BigInt(amount);
  const sign = n < 0n ? "-" : "";
  if (n < 0n) n = -n;
  const scale = 10n ** BigInt(decimals);
  const whole = (n / scale).toLocaleString("en-US");
  let frac = decimals ? (n % scale).toString().padStart(decimals, "0").slice(0, maxFraction) : "";
  frac = frac.replace(/0+$/, "");
  return `${sign}${whole}${frac ? "." + frac : ""} ${symbol}`;
}

function money(m) {
  return m && m.amount !== undefined && m.currencyCode ? `${m.amount} ${m.currencyCode}` : "";
}

function enumName(value, prefix) {
  return String(value || "").replace(prefix, "").toLowerCase().replaceAll("_", " ") || "—";
}

function when(ts) {
  return ts ? new Date(ts).toLocaleString() : "—";
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== false && v !== undefined) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function table(headers, rows, empty) {
  if (!rows.length) return el("p", { class: "note" }, empty);
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      {},
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => (c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c)))))),
    ),
  );
}

const num = (text) => el("td", { class: "num" }, text);
const id = (text) => el("span", { class: "id" }, text || "—");
const mayChange = () => me && me.roles.some((r) => ["owner", "admin", "trader"].includes(r));
const mayAdmin = () => me && me.roles.some((r) => ["owner", "admin"].includes(r));

function failure(err) {
  return el("p", { class: "error", role: "alert" }, `${err.code || "error"}: ${err.message}`);
}

function toast(text) {
  $("#toast").textContent = text;
  setTimeout(() => ($("#toast").textContent = ""), 5000);
}

// A line chart of cumulative PnL points (integers kept exact; only the drawing uses floats).
function pnlChart(series) {
  const points = (series && series.points) || [];
  if (points.length < 2) return el("p", { class: "note" }, "Not enough days of PnL for a chart yet.");
  const values = points.map((p) => Number(BigInt(p.cumulativePnl || "0")));
  const lo = Math.min(...values, 0);
  const hi = Math.max(...values, 0);
  const span = hi - lo || 1;
  const d = values.map((v, i) => `${i ? "L" : "M"}${(i / (values.length - 1)) * 600},${170 - ((v - lo) / span) * 160}`).join(" ");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 600 180");
  svg.setAttribute("role", "img");
  const last = points[points.length - 1];
  svg.setAttribute("aria-label", `Cumulative PnL over ${points.length} days, now ${units(last.cumulativePnl, series.denomination)}`);
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", d);
  svg.append(path);
  return svg;
}

// ---- pages -----------------------------------------------------------------------------------

const pages = {
  async overview(page) {
    page.append(el("h1", {}, "Overview"));
    const [perf, positions, sessions, executions] = await Promise.allSettled([
      call(S.portfolio, "GetPerformance", { timeframe: { preset: "TIMEFRAME_PRESET_LAST_30_DAYS" } }),
      call(S.portfolio, "GetPositions", {}),
      call(S.execution, "ListExecutionSessions", {}),
      call(S.execution, "ListExecutions", { page: { pageSize: 20 } }),
    ]);
    page.append(el("h2", {}, "Profit and loss, last 30 days"));
    if (perf.status === "fulfilled") {
      const metrics = perf.value.metrics || [];
      page.append(
        metrics.length
          ? el("div", { class: "cards" }, metrics.map((m) =>
              el("div", { class: "card" },
                el("div", { class: "figure" }, units(m.totalPnl, m.denomination)),
                el("div", { class: "note" }, `${m.tradeCount || 0} trades, gas ${units(m.gasCostWei, { symbol: "ETH", decimals: 18 })}; realised on chain, in ${m.denomination.symbol || symbols.get(tokenKey(m.denomination)) || m.denomination.address}`))))
          : el("p", { class: "note" }, "No realised PnL yet."),
      );
      for (const s of perf.value.dailyPnl || []) page.append(pnlChart(s));
    } else page.append(failure(perf.reason));

    page.append(el("h2", {}, "Positions"));
    if (positions.status === "fulfilled") {
      const rows = (positions.value.positions || []).map((p) => [
        p.token.symbol, id(p.walletAddress), num(units(p.balance, p.token)), num(units(p.available, p.token)),
        num(units(p.realizedPnl, p.token)),
        num(p.notionalValue ? money(p.notionalValue) : "unpriced (no price source)"),
      ]);
      page.append(table(["Token", "Wallet", "Balance", "Available", "Realised PnL", "Value"], rows, "No positions."));
      if (positions.value.totalNotionalValue)
        page.append(el("p", { class: "note" }, `Total value ${money(positions.value.totalNotionalValue)} at the pricing service's current prices.`));
    } else page.append(failure(positions.reason));

    page.append(el("h2", {}, "Execution sessions"));
    if (sessions.status === "fulfilled") {
      const rows = (sessions.value.sessions || []).map((s) => [
        id(s.sessionId), id(s.strategyId), enumName(s.state, "EXECUTION_STATE_"),
        enumName(s.submissionMode, "SUBMISSION_MODE_"), when(s.startedAt), s.stateReason || "",
      ]);
      page.append(table(["Session", "Strategy", "State", "Mode", "Started", "Reason"], rows, "No sessions yet."));
    } else page.append(failure(sessions.reason));

    page.append(el("h2", {}, "Recent executions"));
    const host = el("div", { id: "executions" });
    page.append(host);
    if (executions.status === "fulfilled") renderExecutions(host, executions.value.executions || []);
    else page.append(failure(executions.reason));
  },

  async strategies(page) {
    page.append(el("h1", {}, "Strategies"));
    if (mayChange()) page.append(strategyForm());
    try {
      const reply = await call(S.strategy, "ListStrategies", {});
      const rows = (reply.strategies || []).map((s) => [
        s.config.name, id(s.strategyId), enumName(s.config.type, "STRATEGY_TYPE_"), enumName(s.status, "STRATEGY_STATUS_"),
        num(s.version), s.config.allocation ? units(s.config.allocation.amount, s.config.allocation.token) : "—",
      ]);
      page.append(el("h2", {}, "Your strategies"), table(["Name", "Id", "Type", "Status", "Version", "Allocation"], rows, "No strategies yet."));
    } catch (err) {
      page.append(failure(err));
    }
  },

  async risk(page) {
    page.append(el("h1", {}, "Risk"));
    try {
      const [limits, kill] = await Promise.all([call(S.risk, "GetLimits", {}), call(S.risk, "GetKillSwitch", {})]);
      const eff = limits.effective || {};
      const token = eff.denomination;
      page.append(
        el("h2", {}, "Kill switch"),
        el("p", { id: "kill-state" }, kill.killSwitch && kill.killSwitch.engaged ? `Engaged: ${kill.killSwitch.reason}` : "Released: trading allowed."),
      );
      if (mayAdmin()) page.append(killSwitchControl(kill.killSwitch && kill.killSwitch.engaged));
      page.append(
        el("h2", {}, "Effective limits (stricter of tenant and plan)"),
        table(["Limit", "Value"], [
          ["Max position", units(eff.maxPosition, token)],
          ["Min profit", units(eff.minProfit, token)],
          ["Daily loss limit", units(eff.dailyLossLimit, token)],
          ["Max gas price", eff.maxGasPriceWei ? units(eff.maxGasPriceWei, { symbol: "gwei", decimals: 9 }) : "—"],
          ["Max slippage", eff.maxSlippageBps ? `${eff.maxSlippageBps / 100}%` : "not set"],
          ["Max concurrent executions", eff.maxConcurrentExecutions ?? "—"],
        ], ""),
      );
      if (mayAdmin()) page.append(limitsForm(limits.record || {}, token));
      const breaches = await call(S.risk, "ListBreaches", { page: { pageSize: 20 } });
      page.append(el("h2", {}, "Breaches"), breachTable(breaches.breaches || []));
    } catch (err) {
      page.append(failure(err));
    }
  },

  async alerts(page) {
    unseen = 0;
    $("#alert-count").textContent = "";
    page.append(el("h1", {}, "Alerts"), el("p", { class: "note" }, "Breaches and kill-switch changes appear here as they happen."));
    page.append(el("ul", { id: "alert-list" }, alerts.map(alertItem)));
    if (!alerts.length) page.append(el("p", { class: "note", id: "no-alerts" }, "No alerts since you opened the portal."));
  },
};

function renderExecutions(host, list) {
  host.replaceChildren(table(["Execution", "Status", "Chain", "Block", "Realised profit", "Gas cost", "Finalised"],
    list.map((e) => [
      id(e.executionId), enumName(e.status, "EXECUTION_RESULT_STATUS_"), num(e.chainId), num(e.blockNumber || "—"),
      num(units(e.realizedProfit, e.profitToken)), num(units(e.gasCost, { symbol: "ETH", decimals: 18 })), when(e.finalizedAt),
    ]), "No executions yet."));
}

function breachTable(list) {
  return table(["When", "Kind", "Limit", "Observed", "Action", "Message"], list.map((b) => [
    when(b.occurredAt), enumName(b.kind, "BREACH_KIND_"), num(units(b.limitValue, b.denomination)),
    num(units(b.observedValue, b.denomination)), enumName(b.action, "BREACH_ACTION_"), b.message || "",
  ]), "No breaches.");
}

function alertItem(a) {
  return el("li", { class: "alert" }, el("strong", {}, a.title), " ", a.text, el("span", { class: "note" }, ` (${when(a.at)})`));
}

// Inline validation: each field violation is shown next to its input; the rest above the form.
function showViolations(form, err) {
  form.querySelectorAll("[aria-invalid]").forEach((i) => i.removeAttribute("aria-invalid"));
  form.querySelectorAll(".error").forEach((e) => (e.textContent = ""));
  const general = form.querySelector(".form-error");
  const unplaced = [];
  for (const v of err.violations || []) {
    const input = form.querySelector(`[data-field="${CSS.escape(v.field)}"]`);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      document.getElementById(input.getAttribute("aria-describedby")).textContent = v.description;
    } else unplaced.push(`${v.field}: ${v.description}`);
  }
  general.textContent = unplaced.length ? unplaced.join("; ") : err.violations.length ? "" : err.message;
}

function field(name, label, input) {
  const errId = `err-${name.replaceAll(".", "-")}`;
  input.setAttribute("id", `f-${name}`);
  input.setAttribute("aria-describedby", errId);
  input.dataset.field = name;
  return [el("label", { for: `f-${name}` }, label), el("div", {}, input, el("p", { class: "error", id: errId }))];
}

function strategyForm() {
  const form = el("form", { class: "grid", id: "strategy-form", novalidate: true },
    field("config.name", "Name", el("input", { name: "name" })),
    field("config.type", "Type", el("select", { name: "type" },
      ["DEX_ARBITRAGE", "FLASH_ARBITRAGE", "CROSS_CHAIN_ARBITRAGE", "LIQUIDATION", "BACKRUN", "SANDWICH"].map((t) =>
        el("option", { value: `STRATEGY_TYPE_${t}` }, t.toLowerCase().replaceAll("_", " "))))),
    field("config.description", "Description", el("input", { name: "description" })),
    el("p", { class: "error form-error", role: "alert" }),
    el("div", {}, el("button", { type: "submit" }, "Create strategy")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    try {
      const reply = await call(S.strategy, "CreateStrategy", {
        idempotencyKey: crypto.randomUUID(),
        config: { name: data.get("name"), type: data.get("type"), description: data.get("description") },
      });
      toast(`Strategy ${reply.strategy.config.name} created.`);
      route();
    } catch (err) {
      showViolations(form, err);
    }
  });
  return el("section", {}, el("h2", {}, "New strategy"), form);
}

function limitsForm(record, token) {
  const limits = record.limits || {};
  const decimals = Number((token && token.decimals) || 0);
  const toBase = (text) => {
    // Whole tokens typed by a person -> exact integer base units (no floats).
    const m = /^(\d+)(?:\.(\d*))?$/.exec(text.trim());
    if (!m) return null;
    const frac = (m[2] || "").padEnd(decimals, "0");
    if (frac.length > decimals) return null;
    return (BigInt(m[1]) * 10n ** BigInt(decimals) + BigInt(frac || "0")).toString();
  };
  const whole = (v) => (v ? units(v, token).split(" ")[0].replaceAll(",", "") : "");
  const form = el("form", { class: "grid", id: "limits-form", novalidate: true },
    // Token amounts need the limits' denomination token: without one only slippage is editable here.
    token ? field("limits.max_position", `Max position (${token.symbol})`, el("input", { name: "max_position", value: whole(limits.maxPosition), inputmode: "decimal" })) : [],
    field("limits.max_slippage_bps", "Max slippage (basis points)", el("input", { name: "max_slippage_bps", value: limits.maxSlippageBps || "", inputmode: "numeric" })),
    el("p", { class: "error form-error", role: "alert" }),
    el("div", {}, el("button", { type: "submit" }, "Save limits")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const maxPosition = token ? toBase(String(data.get("max_position"))) : undefined;
    if (maxPosition === null) {
      showViolations(form, { violations: [{ field: "limits.max_position", description: `a number of ${(token && token.symbol) || "tokens"} with at most ${decimals} decimals` }] });
      return;
    }
    try {
      await call(S.risk, "UpdateLimits", {
        limits: token ? { maxPosition, maxSlippageBps: Number(data.get("max_slippage_bps")) } : { maxSlippageBps: Number(data.get("max_slippage_bps")) },
        updateMask: token ? "maxPosition,maxSlippageBps" : "maxSlippageBps",
        expectedVersion: record.version || "0",
      });
      toast("Limits saved.");
      route();
    } catch (err) {
      showViolations(form, err);
    }
  });
  return el("section", {}, el("h2", {}, "Tenant limits"), form);
}

function killSwitchControl(engaged) {
  const reason = el("input", { id: "kill-reason", name: "reason", placeholder: "why" });
  const button = el("button", { type: "button", class: engaged ? "secondary" : "danger", id: "kill-toggle" },
    engaged ? "Release kill switch" : "Engage kill switch");
  button.addEventListener("click", async () => {
    if (!window.confirm(engaged ? "Release the kill switch and allow trading again?" : "Stop all trading now?")) return;
    try {
      await call(S.risk, "SetKillSwitch", { engaged: !engaged, reason: reason.value || "from the portal" });
      route();
    } catch (err) {
      toast(`${err.code}: ${err.message}`);
    }
  });
  return el("div", {}, el("label", { for: "kill-reason" }, "Reason "), reason, " ", button);
}

// ---- live events -----------------------------------------------------------------------------

function follow() {
  if (source) return;
  source = new EventSource("/v1/events/alerts");
  const onAlert = (title, text) => {
    alerts.unshift({ title, text, at: new Date().toISOString() });
    const list = $("#alert-list");
    if (list) {
      $("#no-alerts")?.remove();
      list.prepend(alertItem(alerts[0]));
    } else {
      unseen += 1;
      $("#alert-count").textContent = String(unseen);
    }
  };
  source.addEventListener("breach", (ev) => {
    const b = JSON.parse(ev.data);
    onAlert("Risk breach:", `${enumName(b.kind, "BREACH_KIND_")} — ${b.message || ""} (observed ${units(b.observedValue, b.denomination)}, limit ${units(b.limitValue, b.denomination)})`);
  });
  source.addEventListener("killswitch", (ev) => {
    const k = JSON.parse(ev.data);
    onAlert("Kill switch", `${k.engaged ? "engaged" : "released"}${k.reason ? ": " + k.reason : ""}`);
  });
  const executions = new EventSource("/v1/events/executions");
  const showsExecutions = () => ["", "#/overview"].includes(location.hash) || location.hash.startsWith("#/analytics");
  let again = null;
  executions.addEventListener("execution", () => {
    // The pages that show executions and PnL redraw from the API as each execution lands, and
    // once more a moment later: analytics books a result (the PnL) just after execution says so.
    if (!showsExecutions()) return;
    route();
    clearTimeout(again);
    again = setTimeout(() => showsExecutions() && route(), 1500);
  });
}

// ---- shell -----------------------------------------------------------------------------------

let drawn = 0; // draws started, for route()

async function route() {
  const name = (location.hash.replace("#/", "") || "overview").split("?")[0];
  const render = pages[name] || pages.overview;
  document.querySelectorAll("nav a").forEach((a) => a.toggleAttribute("aria-current", a.getAttribute("href") === `#/${name}`));
  document.querySelectorAll("nav a[aria-current]").forEach((a) => a.setAttribute("aria-current", "page"));
  const page = el("div", {});
  // A slower draw started earlier (a redraw on a live event, the page left meanwhile) must not
  // replace the page drawn since: only the latest draw is shown.
  const mine = ++drawn;
  await render(page);
  if (mine === drawn) $("#page").replaceChildren(page);
}

async function start() {
  if (!SLUG) {
    $("#choose-tenant").hidden = false;
    $("#choose-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      location.href = `/t/${encodeURIComponent($("#tenant-slug").value.trim())}/`;
    });
    return;
  }
  if (location.hash.startsWith("#/enrol/")) return showEnrol(decodeURIComponent(location.hash.slice(8)));
  const reply = await fetch("/portal/session", { credentials: "same-origin" });
  const data = await reply.json().catch(() => ({}));
  if (!reply.ok || data.slug !== SLUG) return showSignIn();
  me = data;
  $("#nav").hidden = false;
  $("#nav-admin").hidden = !mayAdmin();
  $("#sign-out").addEventListener("click", async () => {
    await fetch("/portal/session", { method: "DELETE", credentials: "same-origin" });
    location.reload();
  });
  window.addEventListener("hashchange", route);
  follow();
  await route();
}

// Every deferred script (people.js, admin.js) has run before DOMContentLoaded.
document.addEventListener("DOMContentLoaded", start);
