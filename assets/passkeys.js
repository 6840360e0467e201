// passgate: the passkey ceremonies of the sign-in, enrollment and account
// pages. The Content-Security-Policy forbids inline scripts, so pages only
// mark their forms (data-passkey="sign-in" | "enroll" | "recover" | "add") and this file
// does the rest. The server's JSON answers carry {"publicKey": options};
// errors carry {"error": what went wrong, "next": what to do}.
"use strict";

(() => {
  // --- base64url <-> ArrayBuffer, for browsers without the JSON helpers ---
  const toBuffer = (s) => {
    const b64 = s.replace(/-/g, "+").replace(/_/g, "/");
    const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
    const bin = atob(padded);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  };
  const toBase64url = (buf) => {
    const bytes = new Uint8Array(buf);
    let bin = "";
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };

  const creationOptions = (json) => {
    if (typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function") {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    return {
      ...json,
      challenge: toBuffer(json.challenge),
      user: { ...json.user, id: toBuffer(json.user.id) },
      excludeCredentials: (json.excludeCredentials || []).map((c) => ({ ...c, id: toBuffer(c.id) })),
    };
  };

  const requestOptions = (json) => {
    if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function") {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    return {
      ...json,
      challenge: toBuffer(json.challenge),
      allowCredentials: (json.allowCredentials || []).map((c) => ({ ...c, id: toBuffer(c.id) })),
    };
  };

  // The credential as WebAuthn's JSON (RegistrationResponseJSON or
  // AuthenticationResponseJSON). toJSON() is used where it works; some
  // password-manager extensions return objects whose toJSON() throws.
  const credentialJSON = (cred) => {
    try {
      if (typeof cred.toJSON === "function") return cred.toJSON();
    } catch (_) {
      // fall through to the manual encoding
    }
    const r = cred.response;
    const out = {
      id: cred.id,
      rawId: toBase64url(cred.rawId),
      type: cred.type,
      authenticatorAttachment: cred.authenticatorAttachment || null,
      clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: { clientDataJSON: toBase64url(r.clientDataJSON) },
    };
    if (r.attestationObject) {
      out.response.attestationObject = toBase64url(r.attestationObject);
      out.response.transports = r.getTransports ? r.getTransports() : [];
      if (r.getAuthenticatorData) out.response.authenticatorData = toBase64url(r.getAuthenticatorData());
      const key = r.getPublicKey ? r.getPublicKey() : null;
      if (key) out.response.publicKey = toBase64url(key);
      if (r.getPublicKeyAlgorithm) out.response.publicKeyAlgorithm = r.getPublicKeyAlgorithm();
    } else {
      out.response.authenticatorData = toBase64url(r.authenticatorData);
      out.response.signature = toBase64url(r.signature);
      out.response.userHandle = r.userHandle ? toBase64url(r.userHandle) : null;
    }
    return out;
  };

  // --- talking to passgate ---
  const post = async (url, body, headers = {}) => {
    const res = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", ...headers },
      body: JSON.stringify(body),
    });
    let data = {};
    try {
      data = await res.json();
    } catch (_) {
      // not JSON: keep the generic message below
    }
    if (!res.ok) {
      const err = new Error(data.error || `passgate answered with status ${res.status}.`);
      err.fromServer = true;
      err.next = data.next || "";
      err.status = res.status;
      throw err;
    }
    return data;
  };

  // --- telling the person what is happening ---
  const show = (form, text, kind) => {
    const el = form.querySelector("[data-status]");
    if (!el) return;
    el.textContent = text;
    el.classList.remove("error", "ok");
    if (kind) el.classList.add(kind);
  };

  const explain = (e, what) => {
    if (e.fromServer) return e.next ? `${e.message} ${e.next}` : e.message;
    switch (e.name) {
      case "NotAllowedError":
        return `The ${what} was cancelled or timed out. Press the button to try again.`;
      case "InvalidStateError":
        return "This device or password manager already holds a passkey for this account. Use it to sign in, or choose another one.";
      case "SecurityError":
        return "The browser refused passkeys at this address. Open passgate at its configured address (https, or http://localhost).";
      case "NotSupportedError":
        return "This browser or device cannot make the kind of passkey passgate needs. Try another browser, device or password manager.";
      default:
        return `Something went wrong (${e.name || "error"}: ${e.message || "no details"}). Try again.`;
    }
  };

  const busy = (form, on) => {
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = on;
    form.setAttribute("aria-busy", on ? "true" : "false");
  };

  const supported = (form) => {
    if (window.PublicKeyCredential && navigator.credentials) return true;
    show(form, "This browser does not support passkeys. Use an up-to-date browser such as Chrome, Edge, Firefox or Safari.", "error");
    busy(form, true);
    return false;
  };

  // --- sign-in: autofill (conditional mediation) where available, and the button ---
  const setupSignIn = (form) => {
    if (!supported(form)) return;
    const next = form.dataset.next || "/account";
    let conditional = null;
    let refresh = null;

    const finish = async (cred) => {
      show(form, "Checking your passkey…");
      const result = await post("/login/passkey/finish", credentialJSON(cred));
      show(form, "Signed in. Taking you there…", "ok");
      window.location.assign(result.redirect || "/account");
    };

    // Offers passkeys in the user-name field's autofill. A ceremony lives
    // five minutes on the server, so the offer is renewed before that.
    const startConditional = async () => {
      if (typeof PublicKeyCredential.isConditionalMediationAvailable !== "function") return;
      if (!(await PublicKeyCredential.isConditionalMediationAvailable())) return;
      const controller = new AbortController();
      conditional = controller;
      clearTimeout(refresh);
      refresh = setTimeout(() => {
        controller.abort();
        startConditional();
      }, 270000);
      try {
        const options = await post("/login/passkey/options", { next });
        const cred = await navigator.credentials.get({
          publicKey: requestOptions(options.publicKey),
          mediation: "conditional",
          signal: controller.signal,
        });
        if (controller.signal.aborted) return;
        clearTimeout(refresh);
        busy(form, true);
        await finish(cred);
      } catch (e) {
        if (controller.signal.aborted || e.name === "AbortError") return;
        busy(form, false);
        show(form, explain(e, "sign-in"), "error");
      }
    };

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (conditional) conditional.abort();
      clearTimeout(refresh);
      busy(form, true);
      show(form, "Follow your browser's prompt to use your passkey…");
      try {
        const options = await post("/login/passkey/options", { next });
        const cred = await navigator.credentials.get({ publicKey: requestOptions(options.publicKey) });
        await finish(cred);
      } catch (e) {
        busy(form, false);
        show(form, explain(e, "sign-in"), "error");
      }
    });

    startConditional();
  };

  // --- creating a passkey: first one (enrollment) or another one (account) ---
  const setupCreate = (form, endpoints, body, headers) => {
    if (!supported(form)) return;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      busy(form, true);
      show(form, "Follow your browser's prompt to create the passkey…");
      try {
        const options = await post(endpoints.options, body(), headers);
        const cred = await navigator.credentials.create({ publicKey: creationOptions(options.publicKey) });
        show(form, "Saving your passkey…");
        const result = await post(endpoints.finish, credentialJSON(cred), headers);
        show(form, "Your passkey is saved.", "ok");
        window.location.assign(result.redirect || "/account");
      } catch (e) {
        busy(form, false);
        show(form, explain(e, "passkey creation"), "error");
      }
    });
  };

  const field = (form, name) => {
    const el = form.querySelector(`[name="${name}"]`);
    return el ? el.value : "";
  };

  const init = () => {
    for (const form of document.querySelectorAll("form[data-passkey]")) {
      switch (form.dataset.passkey) {
        case "sign-in":
          setupSignIn(form);
          break;
        case "enroll":
          setupCreate(
            form,
            { options: "/enroll/passkey/options", finish: "/enroll/passkey/finish" },
            () => ({ token: form.dataset.token || "", displayName: field(form, "display_name") }),
            {},
          );
          break;
        case "recover":
          setupCreate(
            form,
            { options: "/recover/passkey/options", finish: "/recover/passkey/finish" },
            () => ({ token: form.dataset.token || "", label: field(form, "label") }),
            {},
          );
          break;
        case "add":
          setupCreate(
            form,
            { options: "/account/passkeys/options", finish: "/account/passkeys/finish" },
            () => ({ label: field(form, "label") }),
            { "X-CSRF-Token": form.dataset.csrf || "" },
          );
          break;
        default:
          break;
      }
    }
    // One-time links (admin invitations): select all on focus for copying,
    // and a Copy button where the clipboard can be written.
    for (const input of document.querySelectorAll("input[data-select-on-focus]")) {
      input.addEventListener("focus", () => input.select());
    }
    for (const button of document.querySelectorAll("button[data-copy]")) {
      const input = document.getElementById(button.dataset.copy);
      const status =
        document.getElementById(button.dataset.copyStatusId || "") ||
        document.querySelector("[data-copy-status]");
      if (!input || !navigator.clipboard) continue;
      button.hidden = false;
      button.addEventListener("click", async () => {
        try {
          await navigator.clipboard.writeText(input.value);
          if (status) status.textContent = button.dataset.copied || "Copied. Paste it into your message.";
        } catch (_) {
          input.focus();
          if (status) status.textContent = "Copying was refused: the text is selected, copy it with your keyboard.";
        }
      });
    }
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
