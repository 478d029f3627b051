// People signing in: email + password + authenticator code, single sign-on, an API key, and the
// enrolment page an admin's one-time link opens. Uses the helpers of app.js (loaded first).
"use strict";

async function postJson(path, body) {
  const reply = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await reply.json().catch(() => ({}));
  if (!reply.ok) throw new ApiError(reply.status, data);
  return data;
}

function showError(input, target, err) {
  if (input) input.setAttribute("aria-invalid", "true");
  target.textContent = err.violations.length ? err.violations.map((v) => v.description).join("; ") : err.message;
}

function showSignIn() {
  $("#sign-in").hidden = false;
  $("#nav").hidden = true;
  $("#page").replaceChildren();
  if (body.dataset.sso === "true") $("#sso").hidden = false;
  // A message handed back by the single sign-on round trip (#/sign-in?sso=...).
  const said = new URLSearchParams(location.hash.split("?")[1] || "").get("sso");
  if (said) $("#sign-in-message").textContent = `Single sign-on failed: ${said}`;
  $("#sign-in-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await postJson("/portal/session", {
        slug: SLUG, email: $("#email").value, password: $("#password").value, totp_code: $("#totp-code").value,
      });
    } catch (err) {
      $("#password").value = "";
      $("#totp-code").value = "";
      const wait = err.status === 429 ? " Too many failed attempts: wait a little and try again." : "";
      showError(null, $("#password-error"), err);
      $("#password-error").textContent += wait;
      return;
    }
    location.hash = "";
    location.reload();
  });
  $("#sign-in-key-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("#api-key");
    try {
      await postJson("/portal/session", { slug: SLUG, api_key: input.value });
    } catch (err) {
      showError(input, $("#api-key-error"), err);
      return;
    }
    location.reload();
  });
}

// Enrolment: an admin's one-time link (#/enrol/<token>) -> the TOTP secret as a QR code and
// text, then a password and the authenticator's first code.
async function showEnrol(token) {
  const host = $("#enrol");
  host.hidden = false;
  $("#nav").hidden = true;
  let info;
  try {
    info = await postJson("/portal/enrolment", { token });
  } catch (err) {
    host.replaceChildren(el("h1", {}, "Set up your sign-in"), failure(err));
    return;
  }
  const form = el("form", { id: "enrol-form", novalidate: true },
    field("password", "New password (at least 12 characters)", el("input", { type: "password", name: "password", autocomplete: "new-password" })),
    field("repeat", "The same password again", el("input", { type: "password", name: "repeat", autocomplete: "new-password" })),
    field("totp_code", "Code from your authenticator app", el("input", { name: "totp_code", inputmode: "numeric", autocomplete: "one-time-code", maxlength: "6" })),
    el("p", { class: "error form-error", role: "alert" }),
    el("button", { type: "submit" }, "Finish enrolment"));
  host.replaceChildren(
    el("h1", {}, "Set up your sign-in"),
    el("p", {}, `For ${info.email}. Scan this code with an authenticator app (or type the secret), then choose a password.`),
    el("img", { class: "qr", src: info.qrCode, alt: "QR code of the authenticator secret" }),
    el("p", {}, "Secret: ", el("span", { class: "secret", id: "totp-secret" }, info.totpSecret)),
    el("p", { class: "note" }, el("a", { href: info.otpauthUri, id: "otpauth-link" }, "Open in an authenticator on this device")),
    form,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    if (data.get("password") !== data.get("repeat")) {
      showViolations(form, { violations: [{ field: "repeat", description: "the two passwords differ" }] });
      return;
    }
    try {
      await postJson("/portal/enrolment/complete", { token, password: data.get("password"), totp_code: data.get("totp_code") });
    } catch (err) {
      showViolations(form, err);
      return;
    }
    host.replaceChildren(el("h1", {}, "You are set up"), el("p", { class: "ok", id: "enrolled" }, `Sign in as ${info.email} with your password and a code.`));
    history.replaceState(null, "", location.pathname);
    showSignIn();
    $("#email").value = info.email;
  });
}

