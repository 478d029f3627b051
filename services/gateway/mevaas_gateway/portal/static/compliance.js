// Pages of protection and compliance: protected transactions (ExecutionService.
// ListProtectedTransactions, filtered and paged, with a lookup by hash or id; refunds in whole
// tokens of the registry's decimals; the sandwich threats of AnalyticsService.GetExecutionReport)
// and the compliance report (AnalyticsService.GetComplianceReport: sanctions hits, the senders and
// counterparties refused, risk decisions, breaches, kill-switch changes, retention). Each has a
// CSV export of what the API answered: amounts are the API's integer strings (wei, base units),
// fees its decimal money, never a float. Uses the helpers of app.js and analytics.js.
"use strict";

// ---- protected transactions ------------------------------------------------------------------

const PROTECTED_STATUSES = ["RECEIVED", "SUBMITTED", "INCLUDED", "REVERTED", "EXPIRED", "FAILED"];
const PROTECTED_HEADERS = [
  "protected_transaction_id", "chain_id", "tx_hash", "sender", "nonce", "mode", "status", "error", "max_block_number",
  "block_number", "received_at", "submitted_at", "included_at", "protection_fee", "fee_currency",
  "refund_base_units", "refund_token_address", "gas_refund_wei", "backrun_profit_base_units", "backrun_tx_hash",
  "refund_token_symbol", "refund",
];

function protectedRow(t) {
  const fee = t.protectionFee || {};
  const refund = t.refund || {};
  return [
    t.protectedTransactionId, t.chainId, t.txHash, t.sender, t.nonce || "0", enumName(t.mode, "PROTECTION_MODE_"),
    enumName(t.status, "PROTECTED_TRANSACTION_STATUS_"), t.error || "", t.maxBlockNumber || "0", t.blockNumber || "0",
    t.receivedAt || "", t.submittedAt || "", t.includedAt || "", fee.amount || "", fee.currencyCode || "",
    refund.amount || "", refund.token ? refund.token.address : "", refund.gasRefund || "", refund.backrunProfit || "",
    refund.backrunTxHash || "", known(refund.token) ? refund.token.symbol : "",
    known(refund.token) ? exactTokens(refund.amount, refund.token.decimals) : "",
  ];
}

// The API names a token's symbol and decimals from the chain registry, or neither (symbol ""):
// then there is no way to place the decimal point, and the amount stays in base units.
const known = (token) => Boolean(token && token.symbol);

// An amount in whole tokens with every digit and the symbol ("123,456,789.000000000000000001
// WETH"), exact by BigInt; the base units on hover. An unknown token's amount says it is base units.
function exactAmount(amount, token) {
  if (amount === undefined || amount === null || amount === "") return el("span", {}, "—");
  const base = `${BigInt(amount).toLocaleString("en-US")} base units`;
  if (!known(token)) {
    const address = token && token.address ? token.address : "?";
    return el("span", { class: "amount", title: `token ${address}: decimals unknown` }, `${base} of unknown token ${address}`);
  }
  const text = exactTokens(amount, token.decimals);
  const sign = text.startsWith("-") ? "-" : "";
  const [whole, frac] = text.replace("-", "").split(".");
  const grouped = `${sign}${BigInt(whole).toLocaleString("en-US")}${frac ? "." + frac : ""}`;
  return el("span", { class: "amount", title: `${base} of ${token.address}` }, `${grouped} ${token.symbol}`);
}

// The whole refund in its token; the part of it that paid the sender's gas is wei, shown in ETH.
function refundCell(t) {
  if (!t.refund) return num("—");
  const gas = t.refund.gasRefund && t.refund.gasRefund !== "0"
    ? [" (gas ", exactAmount(t.refund.gasRefund, { symbol: "ETH", decimals: 18, address: "the native coin" }), ")"] : [];
  return el("td", { class: "num wrap refund" }, exactAmount(t.refund.amount, t.refund.token), ...gas);
}

function protectedTable(list) {
  return table(["Received", "Transaction", "Sender", "Chain", "Mode", "Status", "Block", "Fee", "Refund"],
    list.map((t) => [
      when(t.receivedAt), id(t.txHash), id(t.sender), num(t.chainId), enumName(t.mode, "PROTECTION_MODE_"),
      el("span", { class: "status" }, enumName(t.status, "PROTECTED_TRANSACTION_STATUS_"), t.error ? el("span", { class: "note" }, ` — ${t.error}`) : ""),
      num(t.blockNumber || "—"), num(money(t.protectionFee) || "—"), refundCell(t),
    ]), "No protected transactions match.");
}

// A UTC day typed in a date input -> the start of that day (or of the next one, for an end).
const dayStart = (day, next = false) => {
  const d = new Date(`${day}T00:00:00Z`);
  if (next) d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString();
};

pages.protected = async (page) => {
  page.append(el("h1", {}, "Protected transactions"),
    el("p", { class: "note" }, "Every transaction sent for protection (Protect RPC and API), newest first; refused ones say why."));
  const status = el("select", { name: "status" }, el("option", { value: "" }, "any"),
    PROTECTED_STATUSES.map((s) => el("option", { value: `PROTECTED_TRANSACTION_STATUS_${s}` }, s.toLowerCase())));
  const form = el("form", { class: "grid", id: "protected-filters", novalidate: true },
    field("status", "Status", status),
    field("sender", "Sender", el("input", { name: "sender", placeholder: "0x…", autocomplete: "off" })),
    field("time_range.start", "Received from (UTC day)", el("input", { name: "from", type: "date" })),
    field("time_range.end", "Received to (UTC day, inclusive)", el("input", { name: "to", type: "date" })),
    el("p", { class: "error form-error", role: "alert" }),
    el("div", {}, el("button", { type: "submit", class: "secondary" }, "Filter")));
  const filters = () => {
    const data = new FormData(form);
    const request = {};
    if (data.get("status")) request.status = data.get("status");
    if (String(data.get("sender") || "").trim()) request.sender = String(data.get("sender")).trim();
    const from = data.get("from");
    const to = data.get("to");
    // The API's range needs a start: "to" alone means from the beginning.
    if (from || to) request.timeRange = { start: from ? dayStart(from) : "1970-01-01T00:00:00Z", ...(to ? { end: dayStart(to, true) } : {}) };
    return request;
  };
  const host = el("div", { id: "protected" });
  const more = el("div", { class: "actions" });
  let shown = [];
  const load = async (token) => {
    try {
      const reply = await call(S.execution, "ListProtectedTransactions", { ...filters(), page: { pageSize: 50, pageToken: token } });
      showViolations(form, { violations: [], message: "" });
      shown = token ? shown.concat(reply.transactions || []) : reply.transactions || [];
      host.replaceChildren(protectedTable(shown));
      const next = (reply.page || {}).nextPageToken;
      more.replaceChildren(next ? el("button", { type: "button", class: "secondary", id: "protected-more", onclick: () => load(next) }, "Older") : "");
    } catch (err) {
      showViolations(form, err);
      if (!err.violations.length) host.replaceChildren(failure(err));
    }
  };
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    load("");
  });
  page.append(form, host, more, el("div", { class: "actions" },
    csvButton("export-protected", "Export (CSV, every page of this filter)", `protected-${stamp()}.csv`, PROTECTED_HEADERS,
      async () => (await allPages(S.execution, "ListProtectedTransactions", filters(), "transactions")).map(protectedRow))));
  page.append(el("h2", {}, "Look one up"), lookupForm());
  const threats = el("section", { id: "threats-section" });
  page.append(threats);
  await Promise.all([load(""), showThreats(threats, "TIMEFRAME_PRESET_LAST_30_DAYS")]);
};

function lookupForm() {
  const found = el("div", { id: "protected-found" });
  const form = el("form", { class: "grid", id: "protected-lookup", novalidate: true },
    field("lookup", "Transaction hash or id", el("input", { name: "lookup", placeholder: "0x... or id" })),
    el("p", { class: "error form-error", role: "alert" }),
    el("div", {}, el("button", { type: "submit" }, "Look up")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = String(new FormData(form).get("lookup") || "").trim();
    const request = /^0x[0-9a-fA-F]{64}$/.test(text) ? { txHash: text } : { protectedTransactionId: text };
    try {
      const t = (await call(S.execution, "GetProtectedTransaction", request)).transaction;
      showViolations(form, { violations: [], message: "" });
      const receipt = t.orderingReceipt;
      found.replaceChildren(protectedTable([t]), receipt ? el("p", { class: "note" }, `Fair-ordering receipt #${receipt.sequence}, entry ${receipt.entryHash}`) : "");
    } catch (err) {
      showViolations(form, err.violations.length ? { violations: err.violations.map((v) => ({ ...v, field: "lookup" })) } : err);
    }
  });
  return el("section", {}, form, found);
}

// ---- sandwich threats ------------------------------------------------------------------------

const THREAT_HEADERS = [
  "seen_at", "chain_id", "tx_hash", "victim", "block_number", "pool", "safe_slippage_bps",
  ...["victim_loss", "attacker_profit"].flatMap((c) => [
    `${c}_token_address`, `${c}_token_symbol`, `${c}_base_units`, `${c}_amount`, `${c}_usd`, `${c}_price_usd`,
    `${c}_price_source`, `${c}_price_block`, `${c}_unpriced_reason`,
  ]),
];

function threatValueCells(v) {
  const t = v.token || {};
  return [
    t.address || "", t.symbol || "", v.amount || "0", known(t) ? exactTokens(v.amount || "0", t.decimals) : "",
    v.priced ? (v.value || {}).amount || "" : "", v.priced ? (v.price || {}).value || "" : "",
    v.priceSource || "", v.priced ? v.observedBlock || "0" : "", v.unpricedReason || "",
  ];
}

const threatRow = (t) => [
  t.seenAt || "", t.chainId, t.txHash, t.victim, t.blockNumber || "0", t.pool || "", t.safeSlippageBps || 0,
  ...threatValueCells(t.victimLoss || {}), ...threatValueCells(t.attackerProfit || {}),
];

// The amount, its USD value and how it was priced (the block whose state the price reflects and
// the source), or that it is unpriced and why: an unpriced amount is never shown as $0.
function threatValueCell(v) {
  const how = v.priced
    ? `${money(v.value)}, priced ${Number(v.observedBlock || 0) ? `at block ${v.observedBlock} ` : ""}by ${v.priceSource}`
    : `unpriced${v.unpricedReason ? `: ${v.unpricedReason}` : ""}`;
  return el("td", { class: "num wrap" }, exactAmount(v.amount || "0", v.token), el("div", { class: v.priced ? "note" : "note unpriced" }, how));
}

const unpricedNote = (n) => (Number(n || 0) ? ` + ${n} unpriced` : "");

// AnalyticsService.GetExecutionReport's threats: sandwiches that could have been run on the
// tenant's own pending swaps, newest first, with their totals over the priced amounts.
async function showThreats(host, preset) {
  const choose = el("select", { id: "threats-timeframe", "aria-label": "Threats timeframe" },
    PRESETS.map(([value, label]) => el("option", { value, selected: value === preset }, label)));
  choose.addEventListener("change", () => showThreats(host, choose.value));
  host.replaceChildren(el("h2", {}, "Sandwich threats"),
    el("p", { class: "note" }, "Sandwiches that could have been run on your wallets' pending swaps seen in the public mempool, valued as of the block they were computed on. "),
    el("p", {}, el("label", { for: "threats-timeframe" }, "Period "), choose));
  let reply;
  try {
    reply = await call(S.analytics, "GetExecutionReport", { timeframe: { preset } });
  } catch (err) {
    host.append(failure(err));
    return;
  }
  const threats = reply.threats || [];
  const totals = reply.threatTotals || {};
  host.append(el("div", { class: "cards", id: "threat-totals" }, [
    [String(totals.threats || 0), "threats", "threat-count"],
    [`${money(totals.victimLoss) || "0 USD"}${unpricedNote(totals.victimLossUnpricedCount)}`, "victims' loss (priced amounts summed)", "threat-victim-loss"],
    [`${money(totals.attackerProfit) || "0 USD"}${unpricedNote(totals.attackerProfitUnpricedCount)}`, "attackers' profit (priced amounts summed)", "threat-attacker-profit"],
  ].map(([figure, label, key]) => el("div", { class: "card", id: key }, el("div", { class: "figure" }, figure), el("div", { class: "note" }, label)))),
  el("div", { id: "threats" }, table(["Seen", "Chain", "Transaction", "Victim wallet", "Victim's loss", "Attacker's profit"], threats.map((t) => [
    when(t.seenAt), num(t.chainId), id(t.txHash), id(t.victim), threatValueCell(t.victimLoss || {}), threatValueCell(t.attackerProfit || {}),
  ]), "No threats to your swaps in this period.")),
  el("div", { class: "actions" },
    csvButton("export-threats", "Export threats (CSV)", `threats-${stamp()}.csv`, THREAT_HEADERS, async () => threats.map(threatRow))));
}

// ---- compliance ------------------------------------------------------------------------------

const HIT_HEADERS = ["detected_at", "chain_id", "address", "list_name", "action", "tx_hash", "opportunity_id"];
const hitRow = (h) => [h.detectedAt || "", h.chainId, h.address, h.listName, h.action, h.txHash || "", h.opportunityId || ""];
const SANCTIONED_REASON = "RISK_REASON_CODE_SANCTIONED_COUNTERPARTY";

// The addresses refused, once each: how often, on which lists, where (ingress or risk), last seen.
function refusedParties(hits) {
  const parties = new Map();
  for (const h of hits) {
    const key = `${h.chainId}:${String(h.address).toLowerCase()}`;
    const p = parties.get(key) || { chainId: h.chainId, address: h.address, lists: new Set(), actions: new Set(), count: 0, last: "" };
    p.lists.add(h.listName);
    p.actions.add(h.action);
    p.count += 1;
    if ((h.detectedAt || "") > p.last) p.last = h.detectedAt || "";
    parties.set(key, p);
  }
  return [...parties.values()].sort((a, b) => (a.last < b.last ? 1 : -1));
}

pages.compliance = async (page) => {
  const preset = new URLSearchParams(location.hash.split("?")[1] || "").get("timeframe") || "TIMEFRAME_PRESET_LAST_30_DAYS";
  const choose = el("select", { id: "compliance-timeframe", "aria-label": "Timeframe" },
    PRESETS.map(([value, label]) => el("option", { value, selected: value === preset }, label)));
  choose.addEventListener("change", () => (location.hash = `#/compliance?timeframe=${choose.value}`));
  page.append(el("h1", {}, "Compliance"),
    el("p", {}, el("label", { for: "compliance-timeframe" }, "Period "), choose),
    el("p", { class: "note" }, "Sanctions screening of every counterparty the platform dealt with for you (risk before trading, protection at ingress), and what was refused."));
  const timeframe = { preset };
  let report;
  try {
    report = (await call(S.analytics, "GetComplianceReport", { timeframe, auditPage: { pageSize: 20 } })).report || {};
  } catch (err) {
    page.append(failure(err));
    if (err.code === "PERMISSION_DENIED") page.append(el("p", { class: "note" }, "The compliance report is for the owner, admin and compliance roles."));
    return;
  }
  const hits = report.sanctionedCounterpartyHits || [];
  const decisions = report.riskDecisions || {};
  const byReason = decisions.byReason || {};
  const breaches = report.breaches || [];
  const atIngress = hits.filter((h) => !h.opportunityId).length;
  page.append(el("div", { class: "cards", id: "compliance-figures" }, [
    [hits.length, "sanctions hits"], [atIngress, "refused at protection ingress"],
    [byReason[SANCTIONED_REASON] || 0, "opportunities refused by risk (sanctioned counterparty)"],
    [breaches.filter((b) => b.kind === "BREACH_KIND_SANCTIONED_COUNTERPARTY").length, "sanctions breaches"],
  ].map(([n, label]) => el("div", { class: "card" }, el("div", { class: "figure" }, String(n)), el("div", { class: "note" }, label)))));

  page.append(el("h2", {}, "Refused senders and counterparties"),
    el("div", { id: "refused-parties" }, table(["Address", "Chain", "Lists", "Hits", "What was done", "Last seen"], refusedParties(hits).map((p) => [
      id(p.address), num(p.chainId), [...p.lists].join(", "), num(p.count), [...p.actions].join("; "), when(p.last),
    ]), "Nobody was refused in this period.")));

  page.append(el("h2", {}, "Sanctions screening hits"),
    el("div", { id: "sanctions-hits" }, table(["Detected", "Address", "List", "Chain", "Transaction / opportunity", "Action"], hits.map((h) => [
      when(h.detectedAt), id(h.address), h.listName, num(h.chainId), id(h.txHash || h.opportunityId || "—"), h.action,
    ]), "No sanctions hits in this period.")),
    el("div", { class: "actions" },
      csvButton("export-sanctions", "Export sanctions hits (CSV)", `sanctions-${stamp()}.csv`, HIT_HEADERS, async () => hits.map(hitRow)),
      exportButton("export-compliance-json", "Export full report (JSON)", () => ({ format: "EXPORT_FORMAT_JSON", compliance: { timeframe } })),
      exportButton("export-audit-csv", "Export audit trail (CSV)", () => ({ format: "EXPORT_FORMAT_CSV", compliance: { timeframe } }))));

  page.append(el("h2", {}, "Risk decisions"),
    el("p", {}, `${decisions.approved || 0} approved, ${decisions.rejected || 0} rejected.`),
    table(["Reason", "Decisions"], Object.entries(byReason).sort((a, b) => Number(b[1]) - Number(a[1]))
      .map(([reason, n]) => [enumName(reason, "RISK_REASON_CODE_"), num(n)]), "No decisions in this period."));
  page.append(el("h2", {}, "Breaches"), breachTable(breaches));
  page.append(el("h2", {}, "Kill switch changes"), table(["When", "State", "Strategy", "Reason"], (report.killSwitchChanges || []).map((k) => [
    when(k.occurredAt), k.engaged ? "engaged" : "released", id(k.strategyId || "every strategy"), k.reason || "",
  ]), "No kill switch changes in this period."));
  const retention = report.retentionPolicy || {};
  page.append(el("h2", {}, "Retention"), table(["Record", "Kept"], [
    ["Audit trail", `${retention.auditRetentionDays || 0} days`], ["Trade records", `${retention.tradeRetentionDays || 0} days`],
    ["Personal data after deletion", `${retention.personalDataRetentionDays || 0} days`], ["Legal hold", retention.legalHold ? "on: nothing is purged" : "off"],
  ], ""));
  const audit = report.auditTrail || [];
  page.append(el("h2", {}, "Audit trail"), table(["When", "Action", "Actor", "Outcome"], audit.map((a) => [
    when(a.occurredAt), a.action, id(`${enumName((a.actor || {}).kind, "ACTOR_KIND_")} ${(a.actor || {}).id || ""}`), enumName(a.outcome, "AUDIT_OUTCOME_"),
  ]), "No audit records in this period."), el("p", { class: "note" }, "The oldest 20 of the period; the audit trail export has them all."));
};
