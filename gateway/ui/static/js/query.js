// The query page: a form for the common Beacon v2 queries, the answer per dataset and per peer, pictures.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { BarChart, RegionChart } from "./charts.js";
import { api, errorText, finishOidc, html, render, SignIn, useConfig, useToken } from "./common.js";

const SEXES = [
  ["", "any"],
  ["NCIT:C16576", "female"],
  ["NCIT:C20197", "male"],
  ["NCIT:C17998", "unknown"],
];
const ENTRIES = [
  ["individuals", "Individuals"],
  ["g_variants", "Genomic variants"],
  ["biosamples", "Biosamples"],
];
const GRANULARITIES = [
  ["boolean", "Yes / no"],
  ["count", "Counts"],
  ["record", "Records"],
];
const VARIANT_MODES = [
  ["none", "No variant"],
  ["sequence", "Sequence (one allele)"],
  ["range", "Range"],
  ["gene", "Gene"],
  ["hgvs", "HGVS"],
];

// Plain-language reading of the node's privacy notes (info.privacy); the note itself is shown too.
const EXPLANATIONS = [
  [/counts below (\d+) inside records/, (m) => `Inside the records, numbers below ${m[1]} are left out: so few people could be recognised.`],
  [/counts below (\d+) are not shown/, (m) => `Fewer than ${m[1]} people matched somewhere, so the node only says whether there is a match: small numbers could identify someone.`],
  [/rounded to the nearest (\d+)/, (m) => `Numbers are approximate (rounded to the nearest ${m[1]}) so that repeated queries cannot single out one person.`],
  [/case-level data are not shown/, () => "The list of carriers is left out: its length would be an exact count."],
  [/frequencies are not shown/, () => "Frequencies are left out where the counts behind them are not exact: together they would give the exact count back."],
  [/not available at your access level/, () => "Some datasets need more access than your sign-in gives; they were left out of this answer, not counted as zero."],
  [/answered yes\/no to anonymous callers/, () => "A variant together with phenotypes can point to one person, so anonymous callers get only yes or no. Sign in for more."],
];

export function explain(note) {
  for (const [pattern, words] of EXPLANATIONS) {
    const match = note.match(pattern);
    if (match) return words(match);
  }
  return "";
}

const PAGE_SIZE = 10;

const GRANULARITY_WORDS = {
  boolean: "whether anything matches (yes or no)",
  count: "how many match",
  record: "the matching records",
};

// --- building the request -------------------------------------------------------------------

function variantParameters(v) {
  const params = {};
  const assembly = v.assemblyId ? { assemblyId: v.assemblyId } : {};
  if (v.mode === "sequence") {
    // the form asks for the 1-based VCF position; Beacon's start is 0-based
    Object.assign(params, assembly, {
      referenceName: v.referenceName,
      start: [Number(v.position) - 1],
      referenceBases: v.referenceBases.toUpperCase(),
      alternateBases: v.alternateBases.toUpperCase(),
    });
  } else if (v.mode === "range") {
    Object.assign(params, assembly, {
      referenceName: v.referenceName,
      start: [Number(v.from) - 1],
      end: [Number(v.to)],
    });
  } else if (v.mode === "gene") {
    params.geneId = v.geneId.trim();
    if (v.aminoacidChange.trim()) params.aminoacidChange = v.aminoacidChange.trim();
  } else if (v.mode === "hgvs") {
    params.genomicAlleleShortForm = v.hgvs.trim();
  }
  return params;
}

export function buildRequest(form) {
  const filters = form.terms.map((t) => ({ id: t.id }));
  if (form.sex) filters.push({ id: form.sex });
  if (form.ageValue !== "") filters.push({ id: "age", operator: form.ageOperator, value: `P${Number(form.ageValue)}Y` });
  const query = {
    requestedGranularity: form.granularity,
    includeResultsetResponses: "HIT",
    pagination: { skip: form.page || 0, limit: PAGE_SIZE }, // Beacon's skip counts pages of `limit`
  };
  const params = variantParameters(form.variant);
  if (form.datasets && form.datasets.length) params.datasetIds = form.datasets;
  if (Object.keys(params).length) query.requestParameters = params;
  if (filters.length) query.filters = filters;
  return { meta: { apiVersion: "v2.0" }, query };
}

function shellQuote(text) {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

export function curlOf(url, body, signedIn) {
  const lines = [`curl -s -X POST ${shellQuote(url)}`, `  -H 'Content-Type: application/json'`];
  if (signedIn) lines.push(`  -H "Authorization: Bearer $TOKEN"`);
  lines.push(`  -d ${shellQuote(JSON.stringify(body))}`);
  return lines.join(" \\\n");
}

// --- the term picker: labels from /filtering_terms, keyboard operable (ARIA combobox) ---------

function TermPicker({ terms, chosen, onAdd, onRemove }) {
  const [text, setText] = useState("");
  const [active, setActive] = useState(0);
  const [open, setOpen] = useState(false);
  const input = useRef(null);
  const matches = useMemo(() => {
    const needle = text.trim().toLowerCase();
    if (!needle) return [];
    const taken = new Set(chosen.map((t) => t.id));
    return terms
      .filter((t) => t.type === "ontology" && !taken.has(t.id))
      .filter((t) => (t.label || "").toLowerCase().includes(needle) || t.id.toLowerCase().includes(needle))
      .slice(0, 8);
  }, [text, terms, chosen]);
  const pick = (term) => {
    onAdd({ id: term.id, label: term.label || term.id });
    setText("");
    setOpen(false);
    setActive(0);
    input.current && input.current.focus();
  };
  const onKey = (event) => {
    if (event.key === "ArrowDown") {
      event.preventDefault();
      setOpen(true);
      setActive((a) => Math.min(a + 1, matches.length - 1));
    } else if (event.key === "ArrowUp") {
      event.preventDefault();
      setActive((a) => Math.max(a - 1, 0));
    } else if (event.key === "Enter") {
      event.preventDefault(); // Enter picks a term; it never submits the form half-typed
      if (open && matches[active]) pick(matches[active]);
      else if (/^[A-Za-z][\w.-]*:\S+$/.test(text.trim())) pick({ id: text.trim(), label: text.trim() });
    } else if (event.key === "Escape") {
      setOpen(false);
    }
  };
  const listId = "term-options";
  return html`
    <div class="term-picker">
      <label for="term-input">Phenotypes and diseases</label>
      <p class="hint" id="term-hint">Type a name (e.g. “seizure”) or a CURIE; choose with the arrow keys and Enter.</p>
      <div class="combo">
        <input id="term-input" ref=${input} type="text" role="combobox" autocomplete="off"
          aria-autocomplete="list" aria-expanded=${open && matches.length > 0} aria-controls=${listId}
          aria-describedby="term-hint"
          aria-activedescendant=${open && matches[active] ? `term-option-${active}` : undefined}
          value=${text} onInput=${(e) => { setText(e.target.value); setOpen(true); setActive(0); }}
          onKeyDown=${onKey} onBlur=${() => setTimeout(() => setOpen(false), 150)} />
        ${open && matches.length
          ? html`<ul id=${listId} role="listbox" class="options">
              ${matches.map(
                (t, i) => html`<li id=${`term-option-${i}`} role="option" aria-selected=${i === active}
                  class=${i === active ? "active" : ""} onMouseDown=${(e) => { e.preventDefault(); pick(t); }}>
                  <span class="term-label">${t.label || t.id}</span> <span class="curie">${t.id}</span>
                </li>`,
              )}
            </ul>`
          : null}
      </div>
      <ul class="chosen" aria-label="Chosen terms">
        ${chosen.map(
          (t) => html`<li class="chip">
            <span>${t.label}</span> <span class="curie">${t.id}</span>
            <button type="button" class="remove" aria-label=${`Remove ${t.label}`} onClick=${() => onRemove(t.id)}>×</button>
          </li>`,
        )}
      </ul>
    </div>
  `;
}

// --- reading the answer ---------------------------------------------------------------------

function yesNo(value) {
  return value === true ? "yes" : value === false ? "no" : "—";
}

function label(term) {
  return term ? term.label || term.id : "";
}

function variantRow(r) {
  const hgvs = (r.identifiers || {}).genomicHGVSId || "";
  const attrs = r.molecularAttributes || {};
  return {
    id: r.variantInternalId,
    hgvs,
    genes: (attrs.geneIds || []).join(", "),
    effects: (attrs.molecularEffects || []).map(label).join(", "),
    protein: (attrs.aminoacidChanges || []).join(", "),
    carriers: r.caseLevelData ? r.caseLevelData.length : "",
  };
}

function variantLocation(r) {
  const hgvs = ((r.identifiers || {}).genomicHGVSId || "").match(/^NC_0*(\d+)\.\d+:g\.(\d+)/);
  const interval = (((r.variation || {}).location || {}).interval) || {};
  const start = interval.start && interval.start.value;
  const end = interval.end && interval.end.value;
  const chrom = hgvs ? ({ 23: "X", 24: "Y" }[hgvs[1]] || hgvs[1]) : "?";
  if (typeof start !== "number") return null;
  return { chrom, start, end: typeof end === "number" ? end : start + 1, label: (r.identifiers || {}).genomicHGVSId || r.variantInternalId };
}

function Records({ entry, records }) {
  if (entry === "g_variants") {
    return html`<table class="records" id="records">
      <caption>Variants</caption>
      <thead><tr><th scope="col">Variant</th><th scope="col">HGVS</th><th scope="col">Genes</th>
        <th scope="col">Effect</th><th scope="col">Protein</th><th scope="col">Carriers listed</th></tr></thead>
      <tbody>${records.map((r) => {
        const row = variantRow(r);
        return html`<tr><td>${row.id}</td><td>${row.hgvs}</td><td>${row.genes}</td><td>${row.effects}</td>
          <td>${row.protein}</td><td>${row.carriers}</td></tr>`;
      })}</tbody>
    </table>`;
  }
  if (entry === "individuals") {
    return html`<table class="records" id="records">
      <caption>Individuals</caption>
      <thead><tr><th scope="col">Individual</th><th scope="col">Sex</th><th scope="col">Phenotypes</th>
        <th scope="col">Diseases</th></tr></thead>
      <tbody>${records.map(
        (r) => html`<tr><td>${r.id}</td><td>${label(r.sex)}</td>
          <td>${(r.phenotypicFeatures || []).filter((f) => !f.excluded).map((f) => label(f.featureType)).join(", ")}</td>
          <td>${(r.diseases || []).map((d) => label(d.diseaseCode)).join(", ")}</td></tr>`,
      )}</tbody>
    </table>`;
  }
  return html`<table class="records" id="records">
    <caption>Records</caption>
    <thead><tr><th scope="col">Id</th><th scope="col">Individual</th><th scope="col">Details</th></tr></thead>
    <tbody>${records.map(
      (r) => html`<tr><td>${r.id}</td><td>${r.individualId || ""}</td>
        <td>${label(r.sampleOriginType || r.biosampleStatus)}</td></tr>`,
    )}</tbody>
  </table>`;
}

function PrivacyNotes({ notes, warnings }) {
  if (!notes.length && !warnings.length) return null;
  return html`<section class="notes" aria-label="Privacy notes and warnings" id="privacy-notes">
    ${notes.length ? html`<h3>What the node held back, and why</h3>` : null}
    <ul>${notes.map((n) => html`<li><strong>${explain(n) || n}</strong>${explain(n) ? html`<br /><span class="note-raw">The node says: “${n}”</span>` : null}</li>`)}</ul>
    ${warnings.length ? html`<h3>Warnings</h3><ul>${warnings.map((w) => html`<li>${w}</li>`)}</ul>` : null}
  </section>`;
}

function Peers({ peers }) {
  if (!peers || !peers.length) return null;
  return html`<table id="peers">
    <caption>Peers of the network</caption>
    <thead><tr><th scope="col">Peer</th><th scope="col">Status</th><th scope="col">Found</th>
      <th scope="col">Detail</th><th scope="col">Count</th><th scope="col">Time (ms)</th></tr></thead>
    <tbody>${peers.map(
      (p) => html`<tr><td>${p.beaconId || p.url}</td><td>${p.status}${p.reason ? `: ${p.reason}` : ""}</td>
        <td>${yesNo(p.exists)}</td><td>${p.returnedGranularity || ""}</td>
        <td>${p.numTotalResults ?? p.count ?? ""}</td><td>${p.latencyMs ?? ""}</td></tr>`,
    )}</tbody>
  </table>`;
}

function Pager({ page, shown, total, onPage }) {
  const first = page * PAGE_SIZE + 1;
  const more = typeof total === "number" ? first + shown - 1 < total : shown === PAGE_SIZE;
  return html`<nav class="row pager" aria-label="Pages of records">
    <span id="records-range">Records ${first}–${first + shown - 1}${typeof total === "number" ? ` of ${total.toLocaleString("en")}` : ""}</span>
    ${page > 0 ? html`<button type="button" id="page-previous" onClick=${() => onPage(page - 1)}>Previous ${PAGE_SIZE}</button>` : null}
    ${more ? html`<button type="button" id="page-next" onClick=${() => onPage(page + 1)}>Next ${PAGE_SIZE}</button>` : null}
  </nav>`;
}

function Answer({ result, entry, requested, perDataset, range, page, onPage }) {
  if (!result) return null;
  if (!result.ok) {
    return html`<section class="answer" id="answer" aria-live="polite">
      <p class="error" role="alert" id="answer-error">The node refused the query: ${errorText(result)}</p>
    </section>`;
  }
  const body = result.data || {};
  const summary = body.responseSummary || {};
  const returned = (body.meta || {}).returnedGranularity || "boolean";
  const info = body.info || {};
  const sets = ((body.response || {}).resultSets || []);
  const records = sets.flatMap((s) => s.results || []);
  const peers = (info.network || {}).peers;
  const variants = entry === "g_variants" ? records.map(variantLocation).filter(Boolean) : [];
  return html`<section class="answer" id="answer" aria-live="polite">
    <h2>Answer</h2>
    <dl class="summary">
      <dt>Anything found?</dt><dd id="answer-exists" class=${summary.exists ? "yes" : "no"}>${yesNo(summary.exists)}</dd>
      ${typeof summary.numTotalResults === "number"
        ? html`<dt>How many</dt><dd id="answer-count">${summary.numTotalResults.toLocaleString("en")}</dd>`
        : null}
      <dt>Detail given</dt>
      <dd id="answer-granularity">${GRANULARITY_WORDS[returned] || returned}${returned !== requested
        ? html` <span class="coarser">(you asked for ${GRANULARITY_WORDS[requested]}; your access level allows less)</span>`
        : null}</dd>
    </dl>
    <${PrivacyNotes} notes=${info.privacy || []} warnings=${info.warnings || []} />
    ${sets.length
      ? html`<table id="datasets-answer">
          <caption>Per dataset</caption>
          <thead><tr><th scope="col">Dataset</th>${peers ? html`<th scope="col">Peer</th>` : null}
            <th scope="col">Found</th><th scope="col">Count</th></tr></thead>
          <tbody>${sets.map(
            (s) => html`<tr><td>${s.id}</td>${peers ? html`<td>${s.beaconId || (s.info || {}).beaconId || ""}</td>` : null}
              <td>${yesNo(s.exists)}</td><td>${s.resultsCount ?? ""}</td></tr>`,
          )}</tbody>
        </table>`
      : null}
    <${Peers} peers=${peers} />
    ${perDataset && perDataset.length ? html`<${BarChart} id="dataset-chart" title=${peers && !sets.length ? "Matches per peer" : "Matches per dataset"} items=${perDataset} />` : null}
    ${variants.length ? html`<${RegionChart} variants=${variants} range=${range} />` : null}
    ${records.length
      ? html`<${Pager} page=${page} shown=${Math.max(...sets.map((s) => (s.results || []).length))} total=${summary.numTotalResults} onPage=${onPage} />
          <${Records} entry=${entry} records=${records} />`
      : null}
  </section>`;
}

// The distributions of each dataset's cohort, as the node returns them under its policy: a count it
// removed is simply absent, and nothing is drawn for it.
function Cohorts({ base, token }) {
  const [cohorts, setCohorts] = useState(null);
  useEffect(() => {
    api(`${base}/cohorts?requestedGranularity=record`).then((r) =>
      setCohorts(r.ok ? ((r.data.response || {}).collections || []) : []),
    );
  }, [base, token]);
  if (!cohorts) return null;
  const charts = [];
  for (const cohort of cohorts) {
    const labels = {}; // CURIE → label, from the cohort's own criteria
    for (const d of ((cohort.inclusionCriteria || {}).diseaseConditions || [])) {
      if (d.diseaseCode && d.diseaseCode.label) labels[d.diseaseCode.id] = d.diseaseCode.label;
    }
    for (const event of cohort.collectionEvents || []) {
      for (const [key, value] of Object.entries(event)) {
        const distribution = value && value.distribution;
        if (!distribution) continue;
        for (const [name, counts] of Object.entries(distribution)) {
          const items = Object.entries(counts || {})
            .filter(([, n]) => typeof n === "number")
            .map(([k, n]) => ({ label: labels[k] || k, value: n }));
          const peer = (cohort.info || {}).beaconId; // in network mode: which peer holds the cohort
          const title = `${peer ? `${peer} · ` : ""}${cohort.name || cohort.id}: ${name}`;
          if (items.length) charts.push({ title, items, key: `${peer}-${cohort.id}-${key}-${name}` });
        }
      }
    }
  }
  return html`<section class="cohorts" id="cohorts" aria-label="Cohorts">
    <h2>Cohorts</h2>
    ${charts.length
      ? charts.map((c) => html`<${BarChart} key=${c.key} title=${c.title} items=${c.items} />`)
      : html`<p>No cohort distribution is shown at your access level.</p>`}
  </section>`;
}

const EMPTY_VARIANT = {
  mode: "none", assemblyId: "GRCh38", referenceName: "", position: "", referenceBases: "", alternateBases: "",
  from: "", to: "", geneId: "", aminoacidChange: "", hgvs: "",
};

function VariantFields({ variant, set }) {
  const field = (name, text, attrs = {}) => html`<div class="field">
    <label for=${`v-${name}`}>${text}</label>
    <input id=${`v-${name}`} type="text" value=${variant[name]} ...${attrs}
      onInput=${(e) => set({ ...variant, [name]: e.target.value })} />
  </div>`;
  const assembly = html`<div class="field"><label for="v-assemblyId">Assembly</label>
    <select id="v-assemblyId" value=${variant.assemblyId} onChange=${(e) => set({ ...variant, assemblyId: e.target.value })}>
      <option value="GRCh38">GRCh38</option><option value="GRCh37">GRCh37</option>
    </select></div>`;
  return html`<fieldset class="variant">
    <legend>Variant</legend>
    <div class="modes" role="radiogroup" aria-label="Kind of variant query">
      ${VARIANT_MODES.map(
        ([value, text]) => html`<label class="radio"><input type="radio" name="variant-mode" id=${`mode-${value}`} value=${value}
          checked=${variant.mode === value} onChange=${() => set({ ...variant, mode: value })} /> ${text}</label>`,
      )}
    </div>
    <div class="grid">
      ${variant.mode === "sequence"
        ? [assembly, field("referenceName", "Chromosome", { inputmode: "text" }), field("position", "Position (1-based, as in VCF)", { inputmode: "numeric" }),
           field("referenceBases", "Reference bases"), field("alternateBases", "Alternate bases")]
        : null}
      ${variant.mode === "range"
        ? [assembly, field("referenceName", "Chromosome"), field("from", "From (1-based)", { inputmode: "numeric" }), field("to", "To (inclusive)", { inputmode: "numeric" })]
        : null}
      ${variant.mode === "gene" ? [field("geneId", "Gene symbol"), field("aminoacidChange", "Protein change (optional)")] : null}
      ${variant.mode === "hgvs" ? [field("hgvs", "Genomic HGVS (e.g. NC_000002.12:g.166002000T>A)")] : null}
    </div>
  </fieldset>`;
}

function QueryPage() {
  const config = useConfig();
  const token = useToken();
  const [target, setTarget] = useState("local");
  const [entry, setEntry] = useState("individuals");
  const [granularity, setGranularity] = useState("count");
  const [terms, setTerms] = useState([]);
  const [chosen, setChosen] = useState([]);
  const [sex, setSex] = useState("");
  const [ageOperator, setAgeOperator] = useState(">=");
  const [ageValue, setAgeValue] = useState("");
  const [variant, setVariant] = useState(EMPTY_VARIANT);
  const [result, setResult] = useState(null);
  const [perDataset, setPerDataset] = useState(null);
  const [page, setPage] = useState(0);
  const [catalogue, setCatalogue] = useState([]);
  const [selected, setSelected] = useState([]);
  const [busy, setBusy] = useState(false);
  const [signInError, setSignInError] = useState("");

  const base = config ? (target === "network" && config.networkBase ? config.networkBase : config.localBase) : null;
  useEffect(() => {
    if (config && config.oidc) finishOidc(config.oidc).then((e) => e && setSignInError(e));
  }, [config]);
  useEffect(() => setSelected([]), [base]); // dataset ids belong to the base that listed them
  useEffect(() => {
    if (!base) return;
    api(`${base}/filtering_terms`).then((r) => setTerms(r.ok ? ((r.data.response || {}).filteringTerms || []) : []));
    api(`${base}/datasets?requestedGranularity=record&limit=100`).then((r) =>
      setCatalogue(r.ok ? ((r.data.response || {}).collections || []) : []),
    );
  }, [base, token]);

  const form = { terms: chosen, sex, ageOperator, ageValue, granularity, variant, datasets: selected, page };
  const request = buildRequest(form);
  const url = base ? `${window.location.origin}${base}/${entry}` : "";
  const range = variant.mode === "range" && variant.referenceName
    ? { chrom: variant.referenceName.replace(/^chr/i, ""), start: Number(variant.from) - 1, end: Number(variant.to) }
    : null;

  // Counts per dataset for the bar chart: the result sets when the answer has them; otherwise the
  // same query once per dataset the caller may see (each answer is the node's own, under its policy).
  async function breakdown(answer) {
    const sets = ((answer.data || {}).response || {}).resultSets || [];
    if (sets.length) return sets.map((s) => ({ label: s.id, value: typeof s.resultsCount === "number" ? s.resultsCount : s.exists }));
    const peers = (((answer.data || {}).info || {}).network || {}).peers;
    if (peers) return peers.filter((p) => p.status === "ok").map((p) => ({ label: p.beaconId || p.url, value: p.numTotalResults ?? p.exists }));
    const ids = (selected.length ? selected : catalogue.map((c) => c.id)).slice(0, 10);
    if (!ids.length) return null; // the catalogue is not shown at this access level: no breakdown
    if (ids.length === 1) {
      const s = answer.data.responseSummary;
      return [{ label: ids[0], value: s.numTotalResults ?? s.exists }];
    }
    const answers = await Promise.all(
      ids.map((id) => {
        const params = { ...(request.query.requestParameters || {}), datasetIds: [id] };
        return api(`${base}/${entry}`, { method: "POST", body: { ...request, query: { ...request.query, requestParameters: params } } });
      }),
    );
    return answers
      .map((a, i) => (a.ok ? { label: ids[i], value: a.data.responseSummary.numTotalResults ?? a.data.responseSummary.exists } : null))
      .filter(Boolean);
  }

  async function run(pageNumber) {
    setBusy(true);
    const body = buildRequest({ ...form, page: pageNumber });
    const answer = await api(url.slice(window.location.origin.length), { method: "POST", body });
    setResult(answer);
    setPage(pageNumber);
    if (pageNumber === 0) {
      setPerDataset(null);
      if (answer.ok && answer.data.responseSummary && answer.data.responseSummary.exists) setPerDataset(await breakdown(answer));
    }
    setBusy(false);
  }

  function submit(event) {
    event.preventDefault();
    run(0);
  }

  if (!config) return html`<p>Loading…</p>`;
  return html`
    <header class="top">
      <div>
        <h1>${config.node.name || config.node.id}: Beacon query</h1>
        <p class="sub">Ask this ${config.network ? "network node" : "node"} whether it holds people or variants like the ones you describe. <a href="/ui/operator">Operator page</a></p>
      </div>
      <${SignIn} oidc=${config.oidc} purpose="Bearer token (a JWT from your login service, or a GA4GH passport)" />
    </header>
    ${signInError ? html`<p class="error" role="alert">${signInError}</p>` : null}
    <main>
      <form class="query" id="query-form" onSubmit=${submit} aria-label="Beacon query">
        <div class="grid">
          ${config.network
            ? html`<div class="field"><label for="target">Ask</label>
                <select id="target" value=${target} onChange=${(e) => setTarget(e.target.value)}>
                  <option value="local">this node only</option><option value="network">the whole network</option>
                </select></div>`
            : null}
          <div class="field"><label for="entry">Find</label>
            <select id="entry" value=${entry} onChange=${(e) => setEntry(e.target.value)}>
              ${ENTRIES.map(([v, t]) => html`<option value=${v}>${t}</option>`)}
            </select></div>
          <div class="field"><label for="granularity">Answer with</label>
            <select id="granularity" value=${granularity} onChange=${(e) => setGranularity(e.target.value)}>
              ${GRANULARITIES.map(([v, t]) => html`<option value=${v}>${t}</option>`)}
            </select></div>
        </div>
        ${catalogue.length
          ? html`<fieldset id="dataset-choice">
              <legend>Datasets</legend>
              <p class="hint">None ticked: every dataset you may query. Records need the right access to every dataset asked.</p>
              ${catalogue.map(
                (c) => html`<label class="radio"><input type="checkbox" id=${`ds-${c.id}`} checked=${selected.includes(c.id)}
                  onChange=${(e) => setSelected(e.target.checked ? [...selected, c.id] : selected.filter((x) => x !== c.id))} />
                  ${" "}${c.name || c.id} <span class="curie">${c.id}</span></label>`,
              )}
            </fieldset>`
          : null}
        <${VariantFields} variant=${variant} set=${setVariant} />
        <fieldset>
          <legend>People</legend>
          <${TermPicker} terms=${terms} chosen=${chosen} onAdd=${(t) => setChosen([...chosen, t])}
            onRemove=${(id) => setChosen(chosen.filter((t) => t.id !== id))} />
          <div class="grid">
            <div class="field"><label for="sex">Sex</label>
              <select id="sex" value=${sex} onChange=${(e) => setSex(e.target.value)}>
                ${SEXES.map(([v, t]) => html`<option value=${v}>${t}</option>`)}
              </select></div>
            <div class="field"><label for="age-operator">Age</label>
              <div class="inline">
                <select id="age-operator" aria-label="Age comparison" value=${ageOperator} onChange=${(e) => setAgeOperator(e.target.value)}>
                  <option value=">=">at least</option><option value="<=">at most</option><option value="=">exactly</option>
                </select>
                <input id="age-value" type="number" min="0" max="150" aria-label="Age in years" value=${ageValue}
                  onInput=${(e) => setAgeValue(e.target.value)} /> <span>years</span>
              </div></div>
          </div>
        </fieldset>
        <div class="actions"><button type="submit" id="run-query" class="primary" disabled=${busy}>${busy ? "Asking…" : target === "network" ? "Ask the network" : "Ask the node"}</button></div>
      </form>
      <${Answer} result=${result} entry=${entry} requested=${granularity} perDataset=${perDataset} range=${range}
        page=${page} onPage=${run} />
      <details class="reuse" id="reuse">
        <summary>This request as JSON and as curl</summary>
        <h3>JSON body (POST ${url})</h3>
        <pre id="request-json">${JSON.stringify(request, null, 2)}</pre>
        <h3>curl</h3>
        <pre id="request-curl">${curlOf(url, request, Boolean(token))}</pre>
        ${token ? html`<p class="hint">Set <code>TOKEN</code> to your token first; the page never prints it.</p>` : null}
      </details>
      <${Cohorts} base=${base} token=${token} />
    </main>
  `;
}

render(html`<${QueryPage} />`, document.getElementById("app"));
