// Pages that act: execution sessions (start / pause / resume / stop, each confirmed, for traders
// and up), backtests (start one, see its result), onboarding (the phase's checklist; admins
// advance it) and admin (users, their roles and enrolment links; API keys). The services decide
// who may do what; the portal only hides what a role cannot use. Uses the helpers of app.js.
"use strict";

const ROLES = ["owner", "admin", "trader", "viewer", "compliance"];
const roleEnum = (r) => `ROLE_${r.toUpperCase()}`;
const roleName = (r) => String(r).replace("ROLE_", "").toLowerCase();

function confirmed(question) {
  return window.confirm(question);
}

async function strategyOptions() {
  const reply = await call(S.strategy, "ListStrategies", {});
  return (reply.strategies || []).map((s) => el("option", { value: s.strategyId }, `${s.config.name} (v${s.version})`));
}

// ---- sessions --------------------------------------------------------------------------------

pages.sessions = async (page) => {
  page.append(el("h1", {}, "Execution sessions"));
  if (mayChange()) page.append(await startSessionForm());
  const host = el("div", { id: "sessions" });
  page.append(el("h2", {}, "Sessions"), host);
  await renderSessions(host);
};

async function renderSessions(host) {
  let reply;
  try {
    reply = await call(S.execution, "ListExecutionSessions", { page: { pageSize: 50 } });
  } catch (err) {
    host.replaceChildren(failure(err));
    return;
  }
  const rows = (reply.sessions || []).map((s) => [
    id(s.sessionId), id(s.strategyId),
    el("span", { class: "state", "data-session": s.sessionId }, enumName(s.state, "EXECUTION_STATE_")),
    enumName(s.submissionMode, "SUBMISSION_MODE_"), when(s.startedAt), s.stateReason || "",
    mayChange() ? sessionControls(s) : "",
  ]);
  host.replaceChildren(table(["Session", "Strategy", "State", "Mode", "Started", "Reason", ""], rows, "No sessions yet."));
}

function sessionControls(s) {
  const state = String(s.state).replace("EXECUTION_STATE_", "");
  const act = (label, method, question, cls) =>
    el("button", {
      type: "button", class: cls, "data-action": method, "data-session": s.sessionId,
      onclick: async () => {
        if (!confirmed(question)) return;
        try {
          // ResumeExecutionRequest has no reason field (the JSON parser refuses unknown fields).
          const request = method === "ResumeExecution" ? { sessionId: s.sessionId } : { sessionId: s.sessionId, reason: "from the portal" };
          await call(S.execution, method, request);
          toast(`${label}: done.`);
        } catch (err) {
          toast(`${err.code}: ${err.message}`);
        }
        route();
      },
    }, label);
  const buttons = [];
  if (["RUNNING", "STARTING"].includes(state)) buttons.push(act("Pause", "PauseExecution", "Pause this session? It takes no new opportunities until resumed.", "secondary"));
  if (state === "PAUSED") buttons.push(act("Resume", "ResumeExecution", "Resume this session?", "secondary"));
  if (!["STOPPED", "STOPPING", "FAILED"].includes(state)) buttons.push(act("Stop", "StopExecution", "Stop this session for good?", "danger"));
  return el("div", { class: "actions" }, buttons);
}

async function startSessionForm() {
  const form = el("form", { class: "grid", id: "start-form", novalidate: true },
    field("strategy_id", "Strategy", el("select", { name: "strategy_id" }, await strategyOptions())),
    field("wallet_address", "Wallet (empty: the default)", el("input", { name: "wallet_address", placeholder: "0x..." })),
    el("p", { class: "error form-error", role: "alert" }),
    el("div", {}, el("button", { type: "submit" }, "Start session")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const choice = form.querySelector("select").selectedOptions[0];
    if (!confirmed(`Start trading live with ${choice ? choice.textContent : "this strategy"}?`)) return;
    try {
      const reply = await call(S.execution, "StartExecution", {
        idempotencyKey: crypto.randomUUID(), strategyId: data.get("strategy_id") || "", walletAddress: data.get("wallet_address") || "",
      });
      toast(`Session ${reply.session.sessionId} ${enumName(reply.session.state, "EXECUTION_STATE_")}.`);
      route();
    } catch (err) {
      showViolations(form, err);
    }
  });
  return el("section", {}, el("h2", {}, "Start a session"), form);
}

// ---- backtests -------------------------------------------------------------------------------

pages.backtests = async (page) => {
  page.append(el("h1", {}, "Backtests"));
  const result = el("div", { id: "backtest-result" });
  if (mayChange()) page.append(await backtestForm(result));
  const lookup = el("form", { class: "grid", id: "backtest-lookup", novalidate: true },
    field("backtest_id", "Backtest id", el("input", { name: "backtest_id" })),
    el("p", { class: "error form-error", role: "alert" }),
    el("div", {}, el("button", { type: "submit", class: "secondary" }, "Show result")));
  lookup.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const reply = await call(S.strategy, "GetBacktest", { backtestId: new FormData(lookup).get("backtest_id") });
      showViolations(lookup, { violations: [], message: "" });
      renderBacktest(result, reply.backtest);
    } catch (err) {
      showViolations(lookup, err);
    }
  });
  const list = el("div", { id: "backtest-list" });
  page.append(el("h2", {}, "Past backtests"), list, el("h2", {}, "A backtest's result"), lookup, result);
  await renderBacktestList(list, result, "");
};

// ListBacktests, newest first, a page at a time ("More" follows the page token).
async function renderBacktestList(host, result, token) {
  let reply;
  try {
    reply = await call(S.strategy, "ListBacktests", { page: { pageSize: 20, pageToken: token } });
  } catch (err) {
    host.replaceChildren(failure(err));
    return;
  }
  const rows = (reply.backtests || []).map((b) => {
    const m = b.metrics || {};
    const span = b.blockRange || {};
    return [
      id(b.backtestId), id(b.strategyId), num(b.strategyVersion),
      el("span", { class: "state" }, enumName(b.status, "BACKTEST_STATUS_")),
      `${span.chainId}: ${span.fromBlock}–${span.toBlock}`, num(m.tradeCount || "0"),
      num(m.denomination ? units(m.totalPnl, m.denomination) : b.error ? "—" : ""), when(b.createdAt),
      el("button", { type: "button", class: "secondary", "data-backtest": b.backtestId, onclick: async () => {
        try {
          renderBacktest(result, (await call(S.strategy, "GetBacktest", { backtestId: b.backtestId })).backtest);
          result.scrollIntoView();
        } catch (err) {
          toast(`${err.code}: ${err.message}`);
        }
      } }, "Show"),
    ];
  });
  const next = (reply.page || {}).nextPageToken;
  const shown = table(["Backtest", "Strategy", "Version", "Status", "Blocks", "Trades", "PnL", "Run at", ""], rows, "No backtests yet.");
  const more = next ? el("button", { type: "button", class: "secondary", id: "backtests-more", onclick: () => renderBacktestList(host, result, next) }, "Older") : "";
  host.replaceChildren(shown, more);
}

async function backtestForm(result) {
  const number = (name) => el("input", { name, inputmode: "numeric" });
  const form = el("form", { class: "grid", id: "backtest-form", novalidate: true },
    field("strategy_id", "Strategy", el("select", { name: "strategy_id" }, await strategyOptions())),
    field("block_range.chain_id", "Chain id", number("chain_id")),
    field("block_range.from_block", "From block", number("from_block")),
    field("block_range.to_block", "To block", number("to_block")),
    el("p", { class: "error form-error", role: "alert" }),
    el("div", {}, el("button", { type: "submit" }, "Run backtest")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    try {
      const reply = await call(S.strategy, "Backtest", {
        idempotencyKey: crypto.randomUUID(), strategyId: data.get("strategy_id") || "",
        blockRange: { chainId: data.get("chain_id") || "0", fromBlock: data.get("from_block") || "0", toBlock: data.get("to_block") || "0" },
      });
      showViolations(form, { violations: [], message: "" });
      renderBacktest(result, reply.backtest);
      const list = $("#backtest-list");
      if (list) await renderBacktestList(list, result, "");
    } catch (err) {
      showViolations(form, err);
    }
  });
  return el("section", {}, el("h2", {}, "Run a backtest"), form);
}

function renderBacktest(host, b) {
  const m = b.metrics || {};
  host.replaceChildren(
    el("h3", {}, `Backtest ${b.backtestId}: ${enumName(b.status, "BACKTEST_STATUS_")}`),
    b.error ? el("p", { class: "error" }, b.error) : "",
    table(["Figure", "Value"], [
      ["Blocks replayed", b.blocksReplayed || "0"], ["Opportunities found", b.opportunitiesFound || "0"],
      ["Trades", m.tradeCount || "0"], ["Total PnL", m.denomination ? units(m.totalPnl, m.denomination) : "—"],
      ["Gas", units(m.gasCostWei || "0", { symbol: "ETH", decimals: 18 })],
    ], ""),
    pnlChart({ points: b.pnlSeries || [], denomination: m.denomination }),
    table(["Block", "Amount in", "Net profit", "Included"], (b.trades || []).map((t) => [
      num(t.blockNumber), num(m.denomination ? units(t.amountIn, m.denomination) : t.amountIn),
      num(m.denomination ? units(t.netProfit, m.denomination) : t.netProfit), t.included ? "yes" : "no",
    ]), "No trades."),
  );
}

// ---- onboarding ------------------------------------------------------------------------------

const PHASES = [
  ["DISCOVERY", "Tell us what you need", ["Sign the order form", "Name your owners and admins (users)"]],
  ["SETUP", "Set up the tenant", ["Create or import a wallet", "Create a strategy", "Set your risk limits", "Backtest the strategy"]],
  ["DEPLOYMENT", "Go live carefully", ["Live sessions are allowed from here", "Start a session with a small allocation"]],
  ["OPTIMIZATION", "Tune it", ["Compare backtests with live results", "Adjust limits and allocations"]],
  ["LIVE", "Running", ["Review invoices and the compliance report"]],
];

pages.onboarding = async (page) => {
  page.append(el("h1", {}, "Onboarding"));
  let tenant;
  try {
    tenant = (await call(S.tenant, "GetTenant", {})).tenant;
  } catch (err) {
    page.append(failure(err));
    return;
  }
  const current = PHASES.findIndex((p) => `ONBOARDING_PHASE_${p[0]}` === tenant.onboardingPhase);
  page.append(
    el("p", { id: "phase" }, `Current phase: ${current >= 0 ? PHASES[current][0].toLowerCase() : "unknown"}`),
    el("p", { class: "note", id: "live-gate" }, current >= 2 ? "Live sessions are allowed." : "Live sessions start in the deployment phase."),
    el("ol", { class: "checklist" }, PHASES.map(([name, title, steps], i) =>
      el("li", { class: i < current ? "done" : i === current ? "current" : "", "data-phase": name.toLowerCase() },
        `${name.toLowerCase()}: ${title}`, el("ul", {}, steps.map((s) => el("li", {}, s)))))),
  );
  if (mayAdmin() && current >= 0 && current < PHASES.length - 1) {
    const next = PHASES[current + 1][0];
    page.append(el("button", {
      type: "button", id: "advance",
      onclick: async () => {
        if (!confirmed(`Move the tenant to the ${next.toLowerCase()} phase? This cannot be undone.`)) return;
        try {
          await call(S.tenant, "AdvanceOnboarding", { targetPhase: `ONBOARDING_PHASE_${next}` });
          toast(`Now in ${next.toLowerCase()}.`);
        } catch (err) {
          toast(`${err.code}: ${err.message}`);
        }
        route();
      },
    }, `Advance to ${next.toLowerCase()}`));
  }
};

// ---- admin: users, roles, API keys -----------------------------------------------------------

pages.admin = async (page) => {
  page.append(el("h1", {}, "Admin"));
  if (!mayAdmin()) {
    page.append(el("p", { class: "note" }, "Users and API keys are managed by owners and admins."));
    return;
  }
  const [users, keys] = await Promise.allSettled([
    call(S.tenant, "ListUsers", { page: { pageSize: 100 } }),
    call(S.tenant, "ListApiKeys", { page: { pageSize: 100 }, includeRevoked: true }),
  ]);
  page.append(el("h2", {}, "Users"));
  page.append(users.status === "fulfilled" ? usersTable(users.value.users || []) : failure(users.reason));
  page.append(newUserForm(), el("div", { id: "enrolment-link" }));
  page.append(el("h2", {}, "API keys"));
  page.append(keys.status === "fulfilled" ? keysTable(keys.value.apiKeys || []) : failure(keys.reason));
  page.append(newKeyForm(), el("div", { id: "new-secret" }));
};

function roleBoxes(prefix, held) {
  return el("fieldset", { class: "actions", "aria-label": "Roles" }, ROLES.map((r) =>
    el("label", {}, el("input", { type: "checkbox", name: `${prefix}-role`, value: r, checked: held.includes(r) }), ` ${r}`)));
}

function usersTable(list) {
  return table(["Email", "Roles", ""], list.map((u) => {
    const held = (u.roles || []).map(roleName);
    const boxes = roleBoxes(`u-${u.userId}`, held);
    const save = el("button", { type: "button", class: "secondary", onclick: async () => {
      const roles = [...boxes.querySelectorAll("input:checked")].map((i) => roleEnum(i.value));
      try {
        await call(S.tenant, "UpdateUserRoles", { userId: u.userId, roles });
        toast(`Roles of ${u.email} saved.`);
        route();
      } catch (err) {
        toast(`${err.code}: ${err.violations.length ? err.violations[0].description : err.message}`);
      }
    } }, "Save roles");
    const link = el("button", { type: "button", class: "secondary", onclick: async () => {
      try {
        const reply = await call("mevaas.tenancy.v1.SignInService", "CreateEnrolment", { userId: u.userId });
        const url = `${location.origin}${body.dataset.base}#/enrol/${reply.enrolmentToken}`;
        $("#enrolment-link").replaceChildren(el("p", {}, `Enrolment link for ${u.email} (valid until ${when(reply.expiresAt)}; shown once): `, el("span", { class: "secret", id: "enrolment-url" }, url)));
      } catch (err) {
        toast(`${err.code}: ${err.message}`);
      }
    } }, "Enrolment link");
    const remove = el("button", { type: "button", class: "danger", onclick: async () => {
      if (!confirmed(`Delete ${u.email}? Their sessions and keys stop working.`)) return;
      try {
        await call(S.tenant, "DeleteUser", { userId: u.userId });
        toast(`${u.email} deleted.`);
      } catch (err) {
        toast(`${err.code}: ${err.message}`);
      }
      route();
    } }, "Delete");
    return [el("span", { "data-user": u.email }, u.email), boxes, el("div", { class: "actions" }, save, link, remove)];
  }), "No users.");
}

function newUserForm() {
  const form = el("form", { class: "grid", id: "user-form", novalidate: true },
    field("email", "Email", el("input", { name: "email", type: "email" })),
    field("roles", "Roles", roleBoxes("new-user", ["viewer"])),
    el("p", { class: "error form-error", role: "alert" }),
    el("div", {}, el("button", { type: "submit" }, "Add user")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const roles = [...form.querySelectorAll("input[type=checkbox]:checked")].map((i) => roleEnum(i.value));
    try {
      await call(S.tenant, "CreateUser", { idempotencyKey: crypto.randomUUID(), email: new FormData(form).get("email"), roles });
      toast("User added.");
      route();
    } catch (err) {
      showViolations(form, err);
    }
  });
  return form;
}

function keysTable(list) {
  return table(["Name", "Prefix", "Roles", "Last used", "State", ""], list.map((k) => [
    el("span", { "data-key": k.name }, k.name), id(k.prefix), (k.roles || []).map(roleName).join(", "), when(k.lastUsedAt),
    k.revoked ? "revoked" : "active",
    k.revoked ? "" : el("button", { type: "button", class: "danger", "data-revoke": k.name, onclick: async () => {
      if (!confirmed(`Revoke the key ${k.name}? Whatever uses it stops working now.`)) return;
      try {
        await call(S.tenant, "RevokeApiKey", { apiKeyId: k.apiKeyId, reason: "revoked in the portal" });
        toast(`Key ${k.name} revoked.`);
      } catch (err) {
        toast(`${err.code}: ${err.message}`);
      }
      route();
    } }, "Revoke"),
  ]), "No API keys.");
}

function newKeyForm() {
  const form = el("form", { class: "grid", id: "key-form", novalidate: true },
    field("name", "Key name", el("input", { name: "name" })),
    field("roles", "Roles", roleBoxes("new-key", ["viewer"])),
    el("p", { class: "error form-error", role: "alert" }),
    el("div", {}, el("button", { type: "submit" }, "Create key")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const roles = [...form.querySelectorAll("input[type=checkbox]:checked")].map((i) => roleEnum(i.value));
    try {
      const reply = await call(S.tenant, "CreateApiKey", { idempotencyKey: crypto.randomUUID(), name: new FormData(form).get("name"), roles });
      await route();
      $("#new-secret").replaceChildren(el("p", {}, "The key (shown once; keep it somewhere safe): ", el("span", { class: "secret", id: "key-secret" }, reply.secret)));
    } catch (err) {
      showViolations(form, err);
    }
  });
  return form;
}
