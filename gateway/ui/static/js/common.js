// Shared by both pages: rendering (Preact + htm), the caller's token, API calls, sign-in.
import { h, render } from "preact";
import { useEffect, useState } from "preact/hooks";
import htm from "htm";

export const html = htm.bind(h);
export { render };

const TOKEN_KEY = "gateway.token";
const OIDC_KEY = "gateway.oidc";

// The token lives in sessionStorage: gone when the tab closes, never sent anywhere but this node.
export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token.trim());
  else sessionStorage.removeItem(TOKEN_KEY);
  window.dispatchEvent(new Event("gateway-token"));
}

export function useToken() {
  const [token, set] = useState(getToken());
  useEffect(() => {
    const listener = () => set(getToken());
    window.addEventListener("gateway-token", listener);
    return () => window.removeEventListener("gateway-token", listener);
  }, []);
  return token;
}

// What a JWT says about its holder, for display only (the node verifies it; the page does not).
export function tokenClaims(token) {
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const text = atob(parts[1].replace(/-/g, "+").replace(/_/g, "/"));
    return JSON.parse(text);
  } catch {
    return null;
  }
}

// One API call: JSON in and out, the caller's token when there is one. Never throws for an HTTP error:
// the page shows the node's own error message.
export async function api(path, { method = "GET", body, raw, headers = {} } = {}) {
  const token = getToken();
  const sent = { Accept: "application/json", ...headers };
  if (token) sent.Authorization = `Bearer ${token}`;
  let payload;
  if (raw !== undefined) payload = raw;
  else if (body !== undefined) {
    payload = JSON.stringify(body);
    sent["Content-Type"] = "application/json";
  }
  try {
    const response = await fetch(path, { method, headers: sent, body: payload, credentials: "omit" });
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    return { ok: response.ok, status: response.status, data, text };
  } catch (error) {
    return { ok: false, status: 0, data: null, text: String(error) };
  }
}

// The message a failed call should show: the Beacon error, problem JSON or OperationOutcome text.
export function errorText(result) {
  const d = result.data || {};
  if (d.error && d.error.errorMessage) return d.error.errorMessage; // Beacon error
  if (d.error && d.error.message) return d.error.message; // the gateway's plain error body
  if (d.detail) return d.detail;
  if (d.title) return d.title;
  if (d.issue && d.issue.length) return d.issue.map((i) => i.diagnostics).join("; ");
  if (result.status === 0) return `the node could not be reached (${result.text})`;
  return `HTTP ${result.status}`;
}

// --- OIDC sign-in: authorization code with PKCE, for a public client ---------------------------

function base64url(bytes) {
  let text = "";
  for (const b of new Uint8Array(bytes)) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString() {
  const bytes = new Uint8Array(32);
  crypto.getRandomValues(bytes);
  return base64url(bytes);
}

async function discovery(issuer) {
  const url = issuer.replace(/\/$/, "") + "/.well-known/openid-configuration";
  const response = await fetch(url, { credentials: "omit" });
  if (!response.ok) throw new Error(`the issuer's configuration could not be read (HTTP ${response.status})`);
  return response.json();
}

function redirectUri() {
  return window.location.origin + window.location.pathname;
}

export async function startOidc(oidc) {
  const meta = await discovery(oidc.issuer);
  const verifier = randomString();
  const state = randomString();
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  sessionStorage.setItem(OIDC_KEY, JSON.stringify({ verifier, state, tokenEndpoint: meta.token_endpoint }));
  const query = new URLSearchParams({
    response_type: "code",
    client_id: oidc.clientId,
    redirect_uri: redirectUri(),
    scope: oidc.scope,
    state,
    code_challenge: challenge,
    code_challenge_method: "S256",
  });
  window.location.assign(`${meta.authorization_endpoint}?${query}`);
}

// On return from the issuer: trade the code for an access token, then clean the address bar.
export async function finishOidc(oidc) {
  const params = new URLSearchParams(window.location.search);
  const code = params.get("code");
  const pending = JSON.parse(sessionStorage.getItem(OIDC_KEY) || "null");
  if (!oidc || !code || !pending) return null;
  sessionStorage.removeItem(OIDC_KEY);
  window.history.replaceState(null, "", redirectUri());
  if (params.get("state") !== pending.state) return "sign-in refused: the answer did not match the request";
  const form = new URLSearchParams({
    grant_type: "authorization_code",
    code,
    redirect_uri: redirectUri(),
    client_id: oidc.clientId,
    code_verifier: pending.verifier,
  });
  const response = await fetch(pending.tokenEndpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: form,
    credentials: "omit",
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok || !data.access_token) return `sign-in failed: ${data.error_description || data.error || response.status}`;
  setToken(data.access_token);
  return null;
}

// --- the sign-in panel ---------------------------------------------------------------------------

export function SignIn({ oidc, purpose }) {
  const token = useToken();
  const [draft, setDraft] = useState("");
  const [open, setOpen] = useState(false);
  const [message, setMessage] = useState("");
  const claims = token ? tokenClaims(token) : null;
  const who = !token
    ? "Not signed in: you see what the node shows to anonymous callers."
    : claims
      ? `Signed in as ${claims.sub || "?"} (issuer ${claims.iss || "?"}${claims.exp ? `, until ${new Date(claims.exp * 1000).toLocaleTimeString()}` : ""}).`
      : "Using a pasted token (not a JWT: an operator token, for instance).";
  const use = (event) => {
    event.preventDefault();
    if (!draft.trim()) return;
    setToken(draft);
    setDraft("");
    setOpen(false);
  };
  const oidcLogin = async () => {
    try {
      await startOidc(oidc);
    } catch (error) {
      setMessage(String(error.message || error));
    }
  };
  return html`
    <section class="signin" aria-label="Sign-in">
      <p id="who" class="who">${who}</p>
      <div class="row">
        ${token
          ? html`<button type="button" id="sign-out" onClick=${() => setToken("")}>Sign out</button>`
          : html`<button type="button" id="sign-in" aria-expanded=${open} onClick=${() => setOpen(!open)}>
              Sign in with a token
            </button>`}
        ${oidc && !token
          ? html`<button type="button" id="oidc-sign-in" onClick=${oidcLogin}>Sign in at ${new URL(oidc.issuer).host}</button>`
          : null}
      </div>
      ${message ? html`<p class="error" role="alert">${message}</p>` : null}
      ${open && !token
        ? html`<form class="token-form" onSubmit=${use}>
            <label for="token-input">${purpose || "Bearer token"}</label>
            <textarea id="token-input" rows="3" spellcheck="false" autocomplete="off" value=${draft}
              onInput=${(e) => setDraft(e.target.value)}></textarea>
            <button type="submit" id="token-use">Use this token</button>
          </form>`
        : null}
    </section>
  `;
}

export function useConfig() {
  const [config, setConfig] = useState(null);
  useEffect(() => {
    api("/ui/config.json").then((r) => setConfig(r.ok ? r.data : { localBase: "/api", network: false }));
  }, []);
  return config;
}
