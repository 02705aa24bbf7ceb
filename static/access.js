// The access proxy's pages: second factors (TOTP with its QR code, security keys and passkeys through
// webauthn.js; adding or removing one proves the current one first),
// the admin's roles editor, the learner's own lab proxy (roles, invited users) and session replay.
// Handlers are bound by data-action (no inline script), and every change sends the page's CSRF token.
"use strict";
(function () {
  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }
  async function postJson(url, body) {
    var response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(body),
    });
    var json = await response.json().catch(function () { return {}; });
    if (!response.ok) throw new Error(json.error || String(response.status));
    return json;
  }
  function byId(id) { return document.getElementById(id); }
  // Proof that the viewer still holds their second factor, before one is added or removed: the
  // app's current code when typed, else one of their security keys (a step-up challenge), else
  // nothing (their first factor). The server decides whether it is enough.
  async function proof() {
    var current = byId("current-code");
    if (current && current.value.trim()) return { code: current.value };
    var keys = byId("security-keys");
    if (keys && Number(keys.dataset.count) > 0) {
      var options = await postJson("/api/proxy/webauthn/step-up", {});
      return { assertion: await window.hardlabWebauthn.get(options) };
    }
    return {};
  }
  var actions = {
    enroll: async function () {
      try {
        var answer = await postJson("/api/proxy/totp/enroll", await proof());
      } catch (error) {
        byId("totp-status").textContent = "Not replaced: " + error.message;
        return;
      }
      byId("secret").textContent = answer.secret;
      byId("uri").textContent = answer.uri;
      // The server renders the QR code as SVG; it is parsed as a document, not as HTML.
      var svg = new DOMParser().parseFromString(answer.qr_svg, "image/svg+xml").documentElement;
      var qr = byId("qr");
      qr.textContent = "";
      qr.appendChild(document.importNode(svg, true));
      byId("enrolment").hidden = false;
      byId("confirm").hidden = false;
      byId("totp-status").textContent = "Scan the code, then confirm with the code the app shows.";
    },
    confirm: async function () {
      try {
        await postJson("/api/proxy/totp/confirm", { code: byId("code").value });
        byId("totp-status").textContent = "Confirmed. Signing in and hardlab login will ask for this app's code.";
      } catch (error) {
        byId("totp-status").textContent = "Not accepted: " + error.message;
      }
    },
    "remove-totp": async function () {
      try {
        await postJson("/api/proxy/totp/remove", await proof());
        byId("totp-status").textContent = "Removed. You sign in with the password alone until you enrol again.";
      } catch (error) {
        byId("totp-status").textContent = "Not removed: " + error.message;
      }
    },
    "add-key": async function () {
      var status = byId("key-status");
      if (!window.hardlabWebauthn.supported()) {
        status.textContent = "This browser cannot use security keys.";
        return;
      }
      try {
        var body = Object.assign({ name: byId("key-name").value }, await proof());
        var options = await postJson("/api/proxy/webauthn/register/start", body);
        status.textContent = "Touch the new key (or confirm on your device)…";
        var credential = await window.hardlabWebauthn.create(options);
        var key = await postJson("/api/proxy/webauthn/register/finish", { credential: credential });
        status.textContent = "Added " + key.name + ". Signing in asks for a key from now on. Reloading…";
        window.location.reload();
      } catch (error) {
        status.textContent = "Not added: " + window.hardlabWebauthn.explain(error);
      }
    },
    "remove-key": async function (button) {
      var status = byId("key-status");
      try {
        var body = Object.assign({ credential_id: button.dataset.credential }, await proof());
        var answer = await postJson("/api/proxy/webauthn/remove", body);
        status.textContent = "Removed " + answer.name + ". Reloading…";
        window.location.reload();
      } catch (error) {
        status.textContent = "Not removed: " + window.hardlabWebauthn.explain(error);
      }
    },
    // The site's editor (admins) or the learner's own lab proxy's, as the button says.
    "apply-roles": async function (button) {
      var status = byId(button.dataset.status || "apply-status");
      try {
        await postJson(button.dataset.url || "/api/proxy/config", { yaml: byId(button.dataset.source || "roles").value });
        status.textContent = "Applied.";
      } catch (error) {
        status.textContent = "Refused: " + error.message;
      }
    },
    invite: async function () {
      var status = byId("invite-status");
      try {
        var answer = await postJson("/api/proxy/tenant/invite", { user: byId("invite-user").value });
        status.textContent = "Invited " + answer.user + ". Password: " + answer.password +
          " · authenticator secret: " + answer.totp_secret + " (you play this user: keep both for hardlab login).";
      } catch (error) {
        status.textContent = "Not invited: " + error.message;
      }
    },
    replay: async function (button) {
      var response = await fetch("/api/proxy/sessions/" + encodeURIComponent(button.dataset.session), { credentials: "same-origin" });
      var session = await response.json();
      var screen = byId("screen");
      screen.textContent = "";
      byId("meta").textContent = session.user + " on " + session.cluster + " (" + session.protocol + ")";
      var last = 0;
      for (var i = 0; i < session.chunks.length; i++) {
        var chunk = session.chunks[i];
        if ((chunk.direction !== "to_client" && chunk.direction !== "note") || !chunk.text) continue;
        await new Promise(function (done) { setTimeout(done, Math.min(chunk.offset_ms - last, 2000)); });
        last = chunk.offset_ms;
        screen.textContent += chunk.text;
      }
    },
  };
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-action]");
    if (button && actions[button.dataset.action]) actions[button.dataset.action](button);
  });
})();
