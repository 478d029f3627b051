// Pages that report: analytics (PnL by day, executions), treasury (positions per wallet and
// executor contract, with the price each value came from) and invoices, each with a CSV export
// (protected transactions and compliance are in compliance.js). A CSV carries what the API
// answered: amounts as the API's integer base-unit strings plus the same amount in whole tokens
// computed exactly with BigInt (never a float), so a spreadsheet's figures are the platform's to
// the last unit. Uses app.js's helpers.
"use strict";

const PRESETS = [
  ["TIMEFRAME_PRESET_LAST_24_HOURS", "Last 24 hours"],
  ["TIMEFRAME_PRESET_LAST_7_DAYS", "Last 7 days"],
  ["TIMEFRAME_PRESET_LAST_30_DAYS", "Last 30 days"],
  ["TIMEFRAME_PRESET_LAST_90_DAYS", "Last 90 days"],
  ["TIMEFRAME_PRESET_ALL_TIME", "All time"],
];

// ---- exact figures and CSV -------------------------------------------------------------------

// Base units -> whole tokens, every digit kept ("-1.000000000000000001"); "" when there is none.
function exactTokens(amount, decimals) {
  if (amount === undefined || amount === null || amount === "") return "";
  let n = BigInt(amount);
  const sign = n < 0n ? "-" : "";
  if (n < 0n) n = -n;
  const places = Number(decimals || 0);
  const scale = 10n ** BigInt(places);
  const frac = places ? (n % scale).toString().padStart(places, "0").replace(/0+$/, "") : "";
  return `${sign}${n / scale}${frac ? "." + frac : ""}`;
}

// RFC 4180 quoting; a text cell a spreadsheet would run as a formula (=, +, -, @ first) is
// prefixed with ' - numbers (a negative PnL) are left as they are.
function csvCell(value) {
  let text = value === undefined || value === null ? "" : String(value);
  if (/^[=+\-@\t\r]/.test(text) && !/^-?\d+(\.\d+)?$/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function csvText(headers, rows) {
  return [headers, ...rows].map((r) => r.map(csvCell).join(",")).join("\r\n") + "\r\n";
}

function download(filename, content, type = "text/csv;charset=utf-8") {
  const url = URL.createObjectURL(new Blob([content], { type }));
  const link = el("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// A button that fetches the rows when pressed (every page, not only the one on screen).
function csvButton(id, label, filename, headers, rows) {
  return el("button", {
    type: "button", class: "secondary", id,
    onclick: async () => {
      try {
        download(filename, csvText(headers, await rows()));
      } catch (err) {
        toast(`${err.code || "error"}: ${err.message}`);
      }
    },
  }, label);
}

// A report rendered by the API (AnalyticsService.ExportReport), saved byte for byte.
async function exportReport(request) {
  const reply = await call(S.analytics, "ExportReport", request);
  const bytes = Uint8Array.from(atob(reply.content || ""), (c) => c.charCodeAt(0));
  download(reply.filename, bytes, reply.contentType);
}

function exportButton(id, label, request) {
  return el("button", {
    type: "button", class: "secondary", id,
    onclick: async () => {
      try {
        await exportReport(request());
      } catch (err) {
        toast(`${err.code || "error"}: ${err.message}`);
      }
    },
  }, label);
}

// Every page of a List RPC, `key` being the repeated field of its reply.
async function allPages(service, method, request, key) {
  const items = [];
  let token = "";
  do {
    const reply = await call(service, method, { ...request, page: { pageSize: 500, pageToken: token } });
    items.push(...(reply[key] || []));
    token = (reply.page || {}).nextPageToken || "";
  } while (token);
  return items;
}

const stamp = () => new Date().toISOString().slice(0, 10);
const tokenOf = (t) => (t ? { ...t, symbol: t.symbol || symbols.get(tokenKey(t)) || "" } : { symbol: "", address: "", decimals: 0, chainId: "" });

// ---- analytics: PnL and executions -----------------------------------------------------------

const PNL_HEADERS = ["denomination", "chain_id", "token_address", "day", "pnl_base_units", "pnl", "cumulative_base_units", "cumulative", "trades"];

function pnlRows(performance) {
  return (performance.dailyPnl || []).flatMap((series) => {
    const t = tokenOf(series.denomination);
    return (series.points || []).map((p) => [
      t.symbol, t.chainId, t.address, p.time || "", p.pnl, exactTokens(p.pnl, t.decimals),
      p.cumulativePnl, exactTokens(p.cumulativePnl, t.decimals), p.tradeCount || "0",
    ]);
  });
}

const EXECUTION_HEADERS = [
  "execution_id", "session_id", "strategy_id", "status", "chain_id", "block_number", "profit_token", "profit_token_address",
  "expected_profit_base_units", "realized_profit_base_units", "realized_profit", "gas_used", "gas_cost_wei", "tx_hashes", "created_at", "finalized_at",
];

function executionRow(e) {
  const t = tokenOf(e.profitToken);
  return [
    e.executionId, e.sessionId, e.strategyId, enumName(e.status, "EXECUTION_RESULT_STATUS_"), e.chainId, e.blockNumber || "0",
    t.symbol, t.address, e.expectedProfit || "", e.realizedProfit || "", exactTokens(e.realizedProfit, t.decimals),
    e.gasUsed || "0", e.gasCost || "", (e.txHashes || []).join(" "), e.createdAt || "", e.finalizedAt || "",
  ];
}

pages.analytics = async (page) => {
  const preset = new URLSearchParams(location.hash.split("?")[1] || "").get("timeframe") || "TIMEFRAME_PRESET_LAST_30_DAYS";
  const choose = el("select", { id: "timeframe", "aria-label": "Timeframe" },
    PRESETS.map(([value, label]) => el("option", { value, selected: value === preset }, label)));
  choose.addEventListener("change", () => (location.hash = `#/analytics?timeframe=${choose.value}`));
  page.append(el("h1", {}, "Analytics"), el("p", {}, el("label", { for: "timeframe" }, "Period "), choose));
  const timeframe = { preset };
  const [perf, report, executions] = await Promise.allSettled([
    call(S.portfolio, "GetPerformance", { timeframe }),
    call(S.analytics, "GetExecutionReport", { timeframe }),
    call(S.execution, "ListExecutions", { page: { pageSize: 50 } }),
  ]);

  page.append(el("h2", {}, "Profit and loss"));
  if (perf.status === "fulfilled") {
    const metrics = perf.value.metrics || [];
    page.append(table(["Denomination", "Net PnL", "Gross profit", "Gross loss", "Max drawdown", "Gas", "Trades"],
      metrics.map((m) => [
        tokenOf(m.denomination).symbol, num(units(m.totalPnl, m.denomination)), num(units(m.grossProfit, m.denomination)),
        num(units(m.grossLoss, m.denomination)), num(units(m.maxDrawdown, m.denomination)),
        num(units(m.gasCostWei, { symbol: "ETH", decimals: 18 })), num(m.tradeCount || "0"),
      ]), "No realised PnL in this period."));
    for (const s of perf.value.dailyPnl || []) page.append(pnlChart(s));
    // Days with trades on the page; the export has every day of the period.
    const days = (perf.value.dailyPnl || []).flatMap((s) => (s.points || []).filter((p) => Number(p.tradeCount || 0) > 0)
      .map((p) => [(p.time || "").slice(0, 10), tokenOf(s.denomination).symbol, num(units(p.pnl, s.denomination)), num(units(p.cumulativePnl, s.denomination)), num(p.tradeCount)]));
    if (days.length) page.append(table(["Day", "Denomination", "PnL", "Cumulative", "Trades"], days, ""));
    page.append(el("div", { class: "actions" }, csvButton("export-pnl", "Export PnL (CSV)", `pnl-${stamp()}.csv`, PNL_HEADERS, async () => pnlRows(perf.value))));
  } else page.append(failure(perf.reason));

  page.append(el("h2", {}, "Execution report"));
  if (report.status === "fulfilled") page.append(reportFigures(report.value.report || {}));
  else page.append(failure(report.reason));
  page.append(el("div", { class: "actions" },
    exportButton("export-report-csv", "Export report (CSV)", () => ({ format: "EXPORT_FORMAT_CSV", execution: { timeframe } }))));

  page.append(el("h2", {}, "Opportunities"));
  page.append(await opportunitiesSection());

  page.append(el("h2", {}, "Executions"));
  const host = el("div", { id: "executions" });
  page.append(host);
  if (executions.status === "fulfilled") {
    renderExecutions(host, executions.value.executions || []);
    if ((executions.value.page || {}).nextPageToken) page.append(el("p", { class: "note" }, "Showing the newest 50; the export has them all."));
  } else page.append(failure(executions.reason));
  page.append(el("div", { class: "actions" }, csvButton("export-executions", "Export executions (CSV)", `executions-${stamp()}.csv`, EXECUTION_HEADERS,
    async () => (await allPages(S.execution, "ListExecutions", {}, "executions")).map(executionRow))));
};

function reportFigures(r) {
  const counts = ["opportunities", "approved", "rejected", "submitted", "included", "reverted", "dropped", "stale", "failed"];
  const parts = [
    el("div", { class: "cards" }, counts.map((k) => el("div", { class: "card" }, el("div", { class: "figure" }, r[k] || "0"), el("div", { class: "note" }, k)))),
    table(["Profit token", "Expected", "Realised"], (r.profit || []).map((p) => [p.token.symbol, num(units(p.expectedProfit, p.token)), num(units(p.realizedProfit, p.token))]), "No profit in this period."),
  ];
  const latency = (r.latency || []).filter((l) => Number(l.count || 0) > 0);
  if (latency.length) {
    // Latency is a statistic (milliseconds as doubles): the one place floats are shown as such.
    parts.push(table(["Hop", "Count", "p50 ms", "p90 ms", "p99 ms", "max ms"], latency.map((l) => [
      l.hop.replaceAll("_", " "), num(l.count), num(Number(l.p50Ms).toFixed(1)), num(Number(l.p90Ms).toFixed(1)), num(Number(l.p99Ms).toFixed(1)), num(Number(l.maxMs).toFixed(1)),
    ]), ""));
  }
  return el("div", { id: "execution-report" }, parts);
}

// Opportunities with filters (status, strategy), newest first; exports are the API's own files.
const OPPORTUNITY_STATUSES = ["DETECTED", "REJECTED", "APPROVED", "SUBMITTED", "INCLUDED", "REVERTED", "DROPPED", "STALE", "FAILED"];

async function opportunitiesSection() {
  const strategies = (await call(S.strategy, "ListStrategies", {}).catch(() => ({}))).strategies || [];
  const names = Object.fromEntries(strategies.map((st) => [st.strategyId, st.config.name]));
  const status = el("select", { id: "opp-status", name: "status" }, el("option", { value: "" }, "any"),
    OPPORTUNITY_STATUSES.map((st) => el("option", { value: `OPPORTUNITY_STATUS_${st}` }, st.toLowerCase())));
  const strategy = el("select", { id: "opp-strategy", name: "strategy" }, el("option", { value: "" }, "any"),
    strategies.map((st) => el("option", { value: st.strategyId }, st.config.name)));
  const host = el("div", { id: "opportunities" });
  const filters = () => ({ ...(status.value ? { status: status.value } : {}), ...(strategy.value ? { strategyId: strategy.value } : {}) });
  const draw = async () => {
    try {
      const reply = await call(S.analytics, "ListOpportunities", { ...filters(), page: { pageSize: 50 } });
      host.replaceChildren(table(["Detected", "Strategy", "Status", "Expected (net of gas)", "Realised", "Reason"],
        (reply.opportunities || []).map((r) => {
          const o = r.opportunity || {};
          return [
            `block ${o.detectedBlock || "—"}`, names[o.strategyId] || id(o.strategyId), enumName(r.status, "OPPORTUNITY_STATUS_"),
            num(units(o.expectedProfitNetOfGas, o.profitToken)), num(r.realizedProfit ? units(r.realizedProfit, o.profitToken) : "—"), r.reason || "",
          ];
        }), "No opportunities match."),
        (reply.page || {}).nextPageToken ? el("p", { class: "note" }, "The newest 50; the exports have them all.") : "");
    } catch (err) {
      host.replaceChildren(failure(err));
    }
  };
  const form = el("form", { class: "grid", id: "opp-filters", novalidate: true },
    el("label", { for: "opp-status" }, "Status"), status, el("label", { for: "opp-strategy" }, "Strategy"), strategy,
    el("div", {}, el("button", { type: "submit", class: "secondary" }, "Filter")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    draw();
  });
  await draw();
  const request = (format) => () => ({ format, opportunities: filters() });
  return el("section", {}, form, host, el("div", { class: "actions" },
    exportButton("export-opportunities-csv", "Export opportunities (CSV)", request("EXPORT_FORMAT_CSV")),
    exportButton("export-opportunities-json", "Export opportunities (JSON)", request("EXPORT_FORMAT_JSON"))));
}

// ---- treasury: positions ---------------------------------------------------------------------

const POSITION_HEADERS = [
  "chain_id", "token", "token_address", "decimals", "wallet_address", "wallet_balance_base_units", "executor_address",
  "executor_balance_base_units", "balance_base_units", "balance", "realized_pnl_base_units", "value_usd", "price_usd", "price_source", "unpriced_reason", "as_of_block",
];

function positionRow(p) {
  const t = tokenOf(p.token);
  return [
    t.chainId, t.symbol, t.address, t.decimals || 0, p.walletAddress, p.walletBalance || "0", p.executorAddress || "",
    p.executorBalance || "0", p.balance, exactTokens(p.balance, t.decimals), p.realizedPnl || "0",
    p.notionalValue ? p.notionalValue.amount : "", p.price ? p.price.amount : "", p.priceSource || "", p.unpricedReason || "", p.asOfBlock || "0",
  ];
}

pages.treasury = async (page) => {
  page.append(el("h1", {}, "Treasury"), el("p", { class: "note" }, "Balances read from the chain, per wallet and its executor contract; values at the price source named beside each."));
  let positions;
  try {
    positions = await allPages(S.portfolio, "GetPositions", {}, "positions");
  } catch (err) {
    page.append(failure(err));
    return;
  }
  page.append(el("div", { id: "positions" }, table(["Token", "Chain", "Wallet", "In wallet", "Executor", "In executor", "Total", "Value", "Price source"],
    positions.map((p) => [
      p.token.symbol, num(p.token.chainId), id(p.walletAddress), num(units(p.walletBalance, p.token)), id(p.executorAddress || "—"),
      num(units(p.executorBalance, p.token)), num(units(p.balance, p.token)),
      num(p.notionalValue ? money(p.notionalValue) : "unpriced"), p.unpriced ? p.unpricedReason || "no price source" : p.priceSource || "",
    ]), "No positions: fund a wallet to see it here.")));
  page.append(el("div", { class: "actions" }, csvButton("export-positions", "Export positions (CSV)", `positions-${stamp()}.csv`, POSITION_HEADERS,
    async () => (await allPages(S.portfolio, "GetPositions", {}, "positions")).map(positionRow))));
};

// ---- invoices --------------------------------------------------------------------------------

const INVOICE_HEADERS = ["invoice", "status", "period_start", "period_end", "kind", "description", "quantity", "unit_price", "rate_percent", "amount", "currency", "unpriced", "token", "token_amount_base_units"];

function invoiceRows(inv) {
  return (inv.lineItems || []).map((l) => [
    inv.number, enumName(inv.status, "INVOICE_STATUS_"), (inv.period || {}).start || "", (inv.period || {}).end || "",
    enumName(l.kind, "LINE_ITEM_KIND_"), l.description || "", (l.quantity || {}).value || "", l.unitPrice ? l.unitPrice.amount : "",
    (l.ratePercent || {}).value || "", l.amount ? l.amount.amount : "", (l.amount || l.unitPrice || inv.total || {}).currencyCode || "",
    l.unpriced ? "true" : "false", l.token ? l.token.symbol : "", l.tokenAmount || "",
  ]);
}

pages.invoices = async (page) => {
  page.append(el("h1", {}, "Invoices"));
  let invoices;
  try {
    invoices = await allPages(S.analytics, "ListInvoices", {}, "invoices");
  } catch (err) {
    page.append(failure(err));
    return;
  }
  for (const inv of invoices) {
    page.append(
      el("h2", {}, `${inv.number} — ${enumName(inv.status, "INVOICE_STATUS_")} — ${money(inv.total)}`),
      table(["Line", "Quantity", "Unit price / rate", "Amount"], (inv.lineItems || []).map((l) => [
        l.description,
        num(l.unpriced ? units(l.tokenAmount, l.token) : (l.quantity || {}).value || ""),
        num(l.unitPrice ? money(l.unitPrice) : l.ratePercent ? `${l.ratePercent.value}%` : ""),
        num(l.unpriced ? "unpriced" : money(l.amount)),
      ]), "No lines."),
      el("p", { class: "note" }, `Priced with: ${(inv.priceSources || []).join(", ") || "no price needed"}${inv.hasUnpricedProfit ? "; some profit could not be priced" : ""}.`),
    );
  }
  if (!invoices.length) page.append(el("p", { class: "note" }, "No invoices yet."));
  else page.append(el("div", { class: "actions" }, csvButton("export-invoices", "Export invoice lines (CSV)", `invoices-${stamp()}.csv`, INVOICE_HEADERS,
    async () => (await allPages(S.analytics, "ListInvoices", {}, "invoices")).flatMap(invoiceRows))));
};
