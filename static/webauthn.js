// Security keys and passkeys in the browser (WebAuthn). The server's options (webauthn-rs's JSON,
// binary fields in base64url) become the ArrayBuffers navigator.credentials wants, and the
// authenticator's answer goes back as JSON with its binary fields in base64url. Shared by the
// Access page (adding, step-up, removing) and the sign-in page's second step; no inline script.
"use strict";
(function () {
  function fromBase64Url(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) base64 += "=";
    var binary = atob(base64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }
  function toBase64Url(buffer) {
    if (!buffer) return null;
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function credentialList(list) {
    return (list || []).map(function (item) {
      return Object.assign({}, item, { id: fromBase64Url(item.id) });
    });
  }
  function supported() {
    return !!(window.PublicKeyCredential && navigator.credentials);
  }
  // Registers a new credential from the server's CreationChallengeResponse.
  async function create(options) {
    var publicKey = Object.assign({}, options.publicKey);
    publicKey.challenge = fromBase64Url(publicKey.challenge);
    publicKey.user = Object.assign({}, publicKey.user, { id: fromBase64Url(publicKey.user.id) });
    publicKey.excludeCredentials = credentialList(publicKey.excludeCredentials);
    var credential = await navigator.credentials.create({ publicKey: publicKey });
    return {
      id: credential.id,
      rawId: toBase64Url(credential.rawId),
      type: credential.type,
      extensions: credential.getClientExtensionResults(),
      response: {
        attestationObject: toBase64Url(credential.response.attestationObject),
        clientDataJSON: toBase64Url(credential.response.clientDataJSON),
        transports: credential.response.getTransports ? credential.response.getTransports() : [],
      },
    };
  }
  // Answers the server's RequestChallengeResponse with one of the account's credentials.
  async function get(options) {
    var publicKey = Object.assign({}, options.publicKey);
    publicKey.challenge = fromBase64Url(publicKey.challenge);
    publicKey.allowCredentials = credentialList(publicKey.allowCredentials);
    var credential = await navigator.credentials.get({ publicKey: publicKey });
    return {
      id: credential.id,
      rawId: toBase64Url(credential.rawId),
      type: credential.type,
      extensions: credential.getClientExtensionResults(),
      response: {
        authenticatorData: toBase64Url(credential.response.authenticatorData),
        clientDataJSON: toBase64Url(credential.response.clientDataJSON),
        signature: toBase64Url(credential.response.signature),
        userHandle: toBase64Url(credential.response.userHandle),
      },
    };
  }
  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }
  async function postJson(url, body) {
    var response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(body || {}),
    });
    var json = await response.json().catch(function () { return {}; });
    if (!response.ok) throw new Error(json.error || String(response.status));
    return json;
  }
  // The browser's own words for a key that did not answer are about the specification; these are
  // about what to do.
  function explain(error) {
    if (error && error.name === "NotAllowedError") {
      return "the key did not answer, or it is not one of this account's keys: try again, or use another key";
    }
    return error && error.message ? error.message : String(error);
  }
  window.hardlabWebauthn = { explain: explain, supported: supported, create: create, get: get, postJson: postJson };

  // The sign-in page's second step: the options the server made when the password was right are
  // on the page; the key's answer goes to /signin/key, which starts the session.
  async function signInWithKey() {
    var box = document.getElementById("key-signin");
    var status = document.getElementById("key-signin-status");
    if (!box || !status) return;
    if (!supported()) {
      status.textContent = "This browser cannot use security keys.";
      return;
    }
    status.textContent = "Touch your security key (or confirm on your device)…";
    try {
      var assertion = await get(JSON.parse(box.dataset.options));
      var answer = await postJson("/signin/key", { credential: assertion, next: box.dataset.next });
      status.textContent = "Signed in.";
      window.location.assign(answer.next || "/");
    } catch (error) {
      status.textContent = "Not signed in: " + explain(error);
    }
  }
  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-action='key-signin']")) signInWithKey();
  });
  document.addEventListener("DOMContentLoaded", function () {
    if (document.getElementById("key-signin")) signInWithKey();
  });
})();
