// The operator page: datasets, ingest jobs, pending FHIR resources, audit chain, health, self-verification,
// file validation.
import { useEffect, useState } from "preact/hooks";
import { api, errorText, finishOidc, html, render, SignIn, useConfig, useToken } from "./common.js";

const KINDS = ["", "fhir", "phenopacket", "family", "cohort", "beacon-request", "beacon-response", "vcf"];

function useCall(path, token, every = 0) {
  const [result, setResult] = useState(null);
  useEffect(() => {
    if (!token) return undefined;
    let stop = false;
    const load = () => api(path).then((r) => !stop && setResult(r));
    load();
    const timer = every ? setInterval(load, every) : null;
    return () => {
      stop = true;
      if (timer) clearInterval(timer);
    };
  }, [path, token]);
  return result;
}

function Health({ token }) {
  const ready = useCall("/ready", token, 10000);
  const audit = useCall("/admin/audit/verify", token);
  const auditBody = audit && audit.data;
  return html`<div class="cards">
    <section class="card" aria-labelledby="health-title" id="health">
      <h2 id="health-title">Health</h2>
      ${!ready ? html`<p>…</p>` : html`<p class=${ready.ok ? "ok" : "error"}>${ready.ok ? "Ready" : "Not ready"}</p>
        <ul>${Object.entries((ready.data || {}).checks || {}).map(([k, v]) => html`<li>${k}: ${v ? "ok" : "failing"}</li>`)}</ul>`}
    </section>
    <section class="card" aria-labelledby="audit-title" id="audit">
      <h2 id="audit-title">Audit chain</h2>
      ${!audit ? html`<p>…</p>`
        : audit.status === 404 ? html`<p>The audit log is switched off.</p>`
        : auditBody && "ok" in auditBody
          ? html`<p class=${auditBody.ok ? "ok" : "error"}>${auditBody.ok ? "Intact" : "BROKEN"}: ${auditBody.records} records</p>
              ${auditBody.message && !auditBody.ok ? html`<p>${auditBody.message}</p>` : null}`
          : html`<p class="error">${errorText(audit)}</p>`}
    </section>
  </div>`;
}

function policyText(policy) {
  const ceilings = Object.entries(policy.ceilings || {})
    .map(([tier, per]) => {
      const special = Object.entries(per).filter(([entry]) => entry !== "*");
      const extra = special.length ? ` (${special.map(([entry, g]) => `${entry}: ${g || "none"}`).join(", ")})` : "";
      return `${tier.toLowerCase()}: ${per["*"] || "none"}${extra}`;
    })
    .join("; ");
  return `${ceilings}; counts < ${policy.countThreshold} hidden, rounded to ${policy.rounding}; ` +
    `public from ${policy.minPublicSize} individuals; rare alleles ≤ ${policy.rareAlleleMaxCount}`;
}

function Datasets({ token }) {
  const result = useCall("/operator/datasets", token);
  if (!result) return null;
  if (!result.ok) return html`<p class="error">${errorText(result)}</p>`;
  return html`<table id="datasets">
    <caption>Datasets</caption>
    <thead><tr><th scope="col">Dataset</th><th scope="col">Security level</th><th scope="col">Phenopackets</th>
      <th scope="col">VCF samples / variants</th><th scope="col">Data use (DUO)</th><th scope="col">Policy</th></tr></thead>
    <tbody>${result.data.datasets.map(
      (d) => html`<tr>
        <td><strong>${d.name}</strong><br /><span class="curie">${d.id}</span>${d.declared ? "" : " (not declared)"}</td>
        <td>${d.securityLevel}</td>
        <td>${d.phenopackets.toLocaleString("en")}</td>
        <td>${d.variantStore ? `${d.variantStore.samples} samples (${d.variantStore.linkedSamples} linked), ${d.variantStore.variants.toLocaleString("en")} variants${d.variantStore.partitions ? ` in ${d.variantStore.partitions.toLocaleString("en")} units` : ""}, ${d.variantStore.assembly || ""}` : "—"}</td>
        <td>${d.dataUseConditions.map((t) => html`<span title=${t.id}>${t.label || t.id}</span> `)}</td>
        <td>${policyText(d.policy)}</td>
      </tr>`,
    )}</tbody>
  </table>`;
}

function Jobs({ token }) {
  const result = useCall("/operator/jobs?limit=20", token, 5000);
  if (!result) return null;
  if (!result.ok) return html`<p class="error">${errorText(result)}</p>`;
  const jobs = result.data.jobs;
  return html`<table id="jobs">
    <caption>Recent ingest jobs</caption>
    <thead><tr><th scope="col">Job</th><th scope="col">Dataset</th><th scope="col">Status</th><th scope="col">Progress</th>
      <th scope="col">Issues</th></tr></thead>
    <tbody>${jobs.length === 0 ? html`<tr><td colspan="5">No VCF upload yet.</td></tr>` : jobs.map((j) => {
      const finished = j.status === "rejected" || j.status === "failed";
      const percent = finished ? null : typeof j.percent === "number" ? j.percent : j.status === "done" ? 100 : null;
      const summary = j.summary || {};
      const issues = j.issues || [...(summary.skipped || []), ...(summary.issues || [])];
      return html`<tr>
        <td><span class="curie">${j.id}</span><br />${j.modified}</td>
        <td>${j.dataset_id}</td>
        <td>${j.status}${j.error ? html`<br /><span class="error">${j.error}</span>` : null}</td>
        <td>${percent !== null ? html`<progress max="100" value=${percent} aria-label=${`job ${j.id} progress`}>${percent}%</progress> ${Math.round(percent)}%` : ""}
          ${j.records ? html`<br />${j.records.toLocaleString("en")} records read` : null}
          ${j.summary ? html`<br />${summary.recordsWritten} variants written; ${summary.samples} samples, ${summary.samplesLinked} linked` : null}</td>
        <td class="job-issues">${issues.slice(0, 5).map((i) => html`<div><span class=${`severity-${i.severity}`}>${i.severity}</span>${" "}
          <code>${i.location || ""}</code> ${i.message}</div>`)}
          ${issues.length > 5 ? html`<div>… ${issues.length - 5} more</div>` : null}</td>
      </tr>`;
    })}</tbody>
  </table>`;
}

function Pending({ token }) {
  // Resources sent on their own whose Patient has not arrived yet (GET /fhir/$pending, a searchset Bundle).
  const result = useCall("/fhir/$pending", token, 10000);
  if (!result) return null;
  if (!result.ok) return html`<p class="error">${errorText(result)}</p>`;
  const entries = result.data.entry || [];
  return html`<table id="pending">
    <caption>Pending FHIR resources (waiting for their Patient)</caption>
    <thead><tr><th scope="col">Resource</th><th scope="col">Why it waits</th></tr></thead>
    <tbody>${entries.length === 0 ? html`<tr><td colspan="2">No resource is waiting for its Patient.</td></tr>` : entries.map((e) => {
      const issues = ((e.response || {}).outcome || {}).issue || [];
      return html`<tr>
        <td><span class="curie">${e.fullUrl}</span></td>
        <td>${issues.map((i) => html`<div>${i.diagnostics}</div>`)}</td>
      </tr>`;
    })}</tbody>
  </table>`;
}

function SelfVerify({ token }) {
  const [state, setState] = useState(null);
  const poll = async () => {
    const r = await api("/operator/verify");
    setState(r.ok ? r.data : { status: "failed", error: errorText(r) });
    return r.ok ? r.data.status : "failed";
  };
  useEffect(() => {
    if (token) poll();
  }, [token]);
  useEffect(() => {
    if (!state || state.status !== "running") return undefined;
    const timer = setTimeout(poll, 2000);
    return () => clearTimeout(timer);
  }, [state]);
  const start = async () => {
    const r = await api("/operator/verify", { method: "POST" });
    setState(r.ok || r.status === 409 ? r.data : { status: "failed", error: errorText(r) });
  };
  const report = state && state.report && state.report[0];
  const failed = report
    ? [...report.checks, ...Object.values(report.entities).flatMap((e) => e.checks)].filter((c) => c.result !== "pass")
    : [];
  return html`<section class="panel" aria-labelledby="verify-title" id="self-verify">
    <h2 id="verify-title">Conformance of this node (gateway verify)</h2>
    <p class="hint">Runs the Beacon v2 verifier against this node's own Beacon API with your token.</p>
    <button type="button" id="verify-start" onClick=${start} disabled=${state && state.status === "running"}>
      ${state && state.status === "running" ? "Verifying…" : "Verify now"}</button>
    ${state && state.status === "done" && report
      ? html`<p id="verify-result" class=${report.valid ? "ok" : "error"}>
          ${`${report.valid ? "Conformant" : "Not conformant"}: ${report.summary.checks} checks, ${report.summary.failed} failed, ` +
            `${report.summary.warnings} warnings, ${report.summary.requests} requests (${state.url}, finished ${state.finished})`}</p>
          ${failed.length ? html`<ul>${failed.map((c) => html`<li class=${c.result === "fail" ? "error" : ""}>${c.result}: ${c.name} — ${c.message}</li>`)}</ul>` : null}`
      : null}
    ${state && state.status === "failed" ? html`<p class="error" id="verify-result">${state.error}</p>` : null}
  </section>`;
}

// The text at an issue's location: the line of a `file:line` location, or the value a JSON pointer names.
export function excerptAt(text, parsed, location) {
  if (!location) return "";
  const line = location.match(/:(\d+)(?::\d+)?$/);
  if (line && !location.startsWith("/")) {
    const content = text.split(/\r?\n/)[Number(line[1]) - 1];
    return content === undefined ? "" : content.slice(0, 160);
  }
  if (parsed === undefined || !location.startsWith("/")) return "";
  let node = parsed;
  for (const raw of location.slice(1).split("/")) {
    const key = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    if (node === null || typeof node !== "object" || !(key in node)) return "";
    node = node[key];
  }
  const shown = JSON.stringify(node);
  return shown.length > 160 ? `${shown.slice(0, 157)}…` : shown;
}

function Validate() {
  const [file, setFile] = useState(null);
  const [kind, setKind] = useState("");
  const [result, setResult] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    if (!file) return;
    setBusy(true);
    const bytes = await file.arrayBuffer();
    const text = new TextDecoder().decode(bytes.slice(0, 5 * 1024 * 1024));
    let parsed;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    const query = new URLSearchParams({ name: file.name });
    if (kind) query.set("type", kind);
    const r = await api(`/validate?${query}`, { method: "POST", raw: bytes, headers: { "Content-Type": "application/octet-stream" } });
    setResult({ response: r, text, parsed });
    setBusy(false);
  };
  const reports = result && result.response.ok ? result.response.data : [];
  return html`<section class="panel" aria-labelledby="validate-title" id="validate">
    <h2 id="validate-title">Validate a file</h2>
    <p class="hint">FHIR, phenopacket (JSON, YAML or binary), Beacon request or response, VCF. Nothing is stored.</p>
    <form onSubmit=${submit} class="row">
      <label for="validate-file">File</label>
      <input id="validate-file" type="file" onChange=${(e) => setFile(e.target.files[0] || null)} />
      <label for="validate-kind">Kind</label>
      <select id="validate-kind" value=${kind} onChange=${(e) => setKind(e.target.value)}>
        ${KINDS.map((k) => html`<option value=${k}>${k || "detect"}</option>`)}
      </select>
      <button type="submit" id="validate-run" disabled=${!file || busy}>${busy ? "Checking…" : "Validate"}</button>
    </form>
    ${result && !result.response.ok ? html`<p class="error" role="alert">${errorText(result.response)}</p>` : null}
    ${reports.map(
      (rep) => html`<div class="report" id="validation-report">
        <p class=${rep.valid ? "ok" : "error"} id="validation-verdict">${rep.file} (${rep.kind}): ${rep.valid ? "valid" : "not valid"}, ${rep.issues.length} issue(s)</p>
        ${rep.issues.length
          ? html`<table id="validation-issues">
              <caption>Issues</caption>
              <thead><tr><th scope="col">Severity</th><th scope="col">Code</th><th scope="col">Location</th>
                <th scope="col">What is there</th><th scope="col">Message</th></tr></thead>
              <tbody>${rep.issues.map(
                (i) => html`<tr><td class=${`severity-${i.severity}`}>${i.severity}</td><td>${i.code}</td>
                  <td class="location"><code>${i.location || ""}</code></td>
                  <td><span class="excerpt">${excerptAt(result.text, result.parsed, i.location)}</span></td>
                  <td>${i.message}</td></tr>`,
              )}</tbody>
            </table>`
          : null}
      </div>`,
    )}
  </section>`;
}

function OperatorPage() {
  const config = useConfig();
  const token = useToken();
  const check = useCall("/operator/datasets", token);
  const [signInError, setSignInError] = useState("");
  useEffect(() => {
    if (config && config.oidc) finishOidc(config.oidc).then((e) => e && setSignInError(e));
  }, [config]);
  if (!config) return html`<p>Loading…</p>`;
  const allowed = token && check && check.ok;
  return html`
    <header class="top">
      <div>
        <h1>${config.node.name || config.node.id}: operation</h1>
        <p class="sub">For the node's operators. <a href="/ui/">Query page</a></p>
      </div>
      <${SignIn} oidc=${config.oidc} purpose="Operator token (gateway-data/operator.token) or a JWT with an operator role" />
    </header>
    ${signInError ? html`<p class="error" role="alert">${signInError}</p>` : null}
    <main>
      ${!token ? html`<p id="need-token">Sign in with the operator token to see the node's state.</p>` : null}
      ${token && check && !check.ok ? html`<p class="error" role="alert" id="need-token">${errorText(check)}</p>` : null}
      ${allowed
        ? html`<${Health} token=${token} />
            <${Datasets} token=${token} />
            <${Jobs} token=${token} />
            <${Pending} token=${token} />
            <${SelfVerify} token=${token} />`
        : null}
      <${Validate} />
    </main>
  `;
}

render(html`<${OperatorPage} />`, document.getElementById("app"));
