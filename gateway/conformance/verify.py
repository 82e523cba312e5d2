"""`gateway verify URL`: conformance of a remote Beacon v2 node, as a whole.

What is checked is derived from the node's own answers, so the verification grows with the node:
the informational endpoints (/info, /service-info, /map, /configuration, /entry_types, /filtering_terms) against
the gateway's Beacon schemas; every /map URL absolute and reachable; every entry type (from /map, else by probing
the default-model paths) by GET and POST at each granularity, each answer against its envelope and record schema,
never above the granularity asked; GET and POST agreeing; /{id} and the /map cross-links with real ids taken from the
node's records; the node's own filtering terms; pagination (`limit` honoured, `numTotalResults` stable across
pages, pages disjoint); error envelopes with a 4xx status for malformed requests; `testMode` echoed.

The report keeps beacon-verifier's shape (`[{name, url, entities: {entity: {valid, error}}}]`) and adds the
individual checks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from gateway.conformance.client import Answer, HttpClient
from gateway.validation.beacon import validate_beacon_response

GRANULARITIES = ("boolean", "count", "record")
_RANK = {"boolean": 0, "count": 1, "aggregated": 1, "record": 2}
DEFAULT_MODEL_PATHS = ("g_variants", "individuals", "biosamples", "analyses", "runs", "datasets", "cohorts")
INFORMATIONAL = ("info", "service-info", "map", "configuration", "entry_types", "filtering_terms")
API_VERSION = "v2.0.0"
MAX_FILTERS_TRIED = 3
MAX_CROSS_LINKS = 10


@dataclass
class Check:
    name: str
    ok: bool
    message: str = ""
    url: str = ""
    entity: str = ""  # "" for the node-level (informational) checks
    warning: bool = False  # a SHOULD: reported, but not a failure

    def to_dict(self) -> dict:
        level = "pass" if self.ok else "warning" if self.warning else "fail"
        return {"name": self.name, "result": level, "message": self.message, "url": self.url}


@dataclass
class VerifyReport:
    url: str
    name: str = ""
    checks: list[Check] = field(default_factory=list)
    entities: dict[str, str] = field(default_factory=dict)  # entry-type path → entity id
    requests: int = 0

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok and not c.warning]

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> list[dict]:
        """beacon-verifier's shape, extended with `checks` per entity and for the node itself."""
        entities = {}
        for path in self.entities:
            mine = [c for c in self.checks if c.entity == path]
            failed = [c for c in mine if not c.ok and not c.warning]
            entities[path] = {
                "valid": not failed,
                "error": "; ".join(f"{c.name}: {c.message}" for c in failed) or None,
                "checks": [c.to_dict() for c in mine],
            }
        node = [c for c in self.checks if not c.entity]
        return [
            {
                "name": self.name or self.url,
                "url": self.url,
                "valid": self.ok,
                "entities": entities,
                "checks": [c.to_dict() for c in node],
                "summary": {
                    "checks": len(self.checks),
                    "failed": len(self.failures),
                    "warnings": sum(1 for c in self.checks if not c.ok and c.warning),
                    "requests": self.requests,
                },
            }
        ]

    def to_text(self) -> str:
        lines = [f"Beacon {self.name or '?'} at {self.url}"]
        groups: dict[str, list[Check]] = {"": []}
        for path in self.entities:
            groups[path] = []
        for check in self.checks:
            groups.setdefault(check.entity, []).append(check)
        for group, checks in groups.items():
            bad = [c for c in checks if not c.ok]
            title = f"/{group}" if group else "informational endpoints"
            lines.append(f"  {title}: {len(checks) - len(bad)}/{len(checks)} checks passed")
            for check in bad:
                level = "WARNING" if check.warning else "FAIL"
                lines.append(f"    {level} {check.name}: {check.message}" + (f" ({check.url})" if check.url else ""))
        verdict = "conformant" if self.ok else f"NOT conformant: {len(self.failures)} failed check(s)"
        lines.append(f"{len(self.checks)} checks, {self.requests} requests: {verdict}")
        return "\n".join(lines) + "\n"


class _Verifier:
    def __init__(self, client: HttpClient, report: VerifyReport) -> None:
        self.http = client
        self.report = report
        self.filter_terms: list[dict] = []
        self.map_sets: dict[str, dict] = {}

    # --- helpers ------------------------------------------------------------------------------------------

    def check(self, name: str, ok: bool, message: str = "", url: str = "", entity: str = "", warning=False) -> bool:
        self.report.checks.append(Check(name, bool(ok), "" if ok else message, url, entity, warning))
        return bool(ok)

    def schema_check(self, name: str, answer: Answer, entity: str = "", *, kind: str | None = None) -> bool:
        """The answer is JSON, has status 200 (4xx for an error envelope) and validates against its schema."""
        expected = 400 <= answer.status < 500 if kind == "error" else answer.status == 200
        if not expected or not answer.json_ok:
            why = answer.problem or f"HTTP {answer.status}"
            wanted = "a 4xx error" if kind == "error" else "200"
            return self.check(name, False, f"expected {wanted} with a JSON object: {why}", answer.url, entity)
        report = validate_beacon_response(answer.body, kind=kind)
        errors = report.errors
        detail = "; ".join(f"{i.location or '/'}: {i.message}" for i in errors[:3])
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        return self.check(name, not errors, f"schema: {detail}{more}", answer.url, entity)

    # --- informational ------------------------------------------------------------------------------------

    def informational(self) -> dict[str, Answer]:
        answers = {}
        for endpoint in INFORMATIONAL:
            answer = self.http.get(endpoint)
            answers[endpoint] = answer
            self.schema_check(endpoint, answer, kind=endpoint)
        info = answers["info"].body if answers["info"].json_ok else {}
        response = info.get("response") if isinstance(info.get("response"), dict) else {}
        self.report.name = str(response.get("name") or response.get("id") or "")
        root = self.http.get("")
        self.check("root", root.status == 200 and root.json_ok, f"GET / answered {root.status}", root.url)
        self._map(answers["map"])
        self._entry_types(answers["configuration"], answers["entry_types"])
        terms = answers["filtering_terms"].body if answers["filtering_terms"].json_ok else {}
        listed = (terms.get("response") or {}).get("filteringTerms") if isinstance(terms, dict) else None
        self.filter_terms = [t for t in listed or [] if isinstance(t, dict) and isinstance(t.get("id"), str)]
        return answers

    def _map(self, answer: Answer) -> None:
        if not answer.json_ok:
            return
        sets = ((answer.body.get("response") or {}).get("endpointSets")) or {}
        self.map_sets = {k: v for k, v in sets.items() if isinstance(v, dict)} if isinstance(sets, dict) else {}
        urls = list(_map_urls(self.map_sets))
        relative = [u for _, u in urls if not _absolute(u)]
        self.check("map-urls-absolute", not relative, f"relative URLs in /map: {', '.join(relative[:5])}", answer.url)
        unreachable = []
        for key, url in urls:
            if key != "rootUrl" or not _absolute(url):
                continue
            reached = self.http.get(url)
            if reached.status != 200:
                unreachable.append(f"{url} ({reached.status or reached.problem})")
        self.check("map-urls-reachable", not unreachable, f"unreachable: {', '.join(unreachable)}", answer.url)

    def _entry_types(self, configuration: Answer, entry_types: Answer) -> None:
        def ids(answer: Answer) -> set[str] | None:
            if not answer.json_ok:
                return None
            types = (answer.body.get("response") or {}).get("entryTypes")
            return set(types) if isinstance(types, dict) else None

        from_config, from_types = ids(configuration), ids(entry_types)
        if from_config is not None and from_types is not None:
            self.check(
                "entry-types-consistent",
                from_config == from_types,
                f"/configuration lists {sorted(from_config)}, /entry_types {sorted(from_types)}",
                entry_types.url,
            )
        if self.map_sets and from_types is not None:
            mapped = {s.get("entryType") for s in self.map_sets.values()}
            missing = sorted(from_types - mapped)
            self.check("map-covers-entry-types", not missing, f"entry types absent from /map: {missing}", "")
        if self.map_sets:
            # beaconMapSchema: a related endpoint returns an entry type of the node (filtering terms are the
            # set's filteringTermsUrl, not an endpoint returning "filteringTerm").
            served = {s.get("entryType") for s in self.map_sets.values()} | (from_types or set())
            foreign = sorted(
                {
                    f"{e.get('returnedEntryType')} ({name})"
                    for s in self.map_sets.values()
                    for name, e in (s.get("endpoints") or {}).items()
                    if isinstance(e, dict) and e.get("returnedEntryType") not in served
                }
            )
            self.check(
                "map-returned-entry-types",
                not foreign,
                f"/map endpoints return what is no entry type of the node: {', '.join(foreign[:5])}",
                "",
            )

    # --- entry types --------------------------------------------------------------------------------------

    def discover(self) -> dict[str, str]:
        """Entry-type root URL → entity id: from /map, else by probing the default-model paths."""
        roots: dict[str, str] = {}
        for endpoint in self.map_sets.values():
            root = endpoint.get("rootUrl")
            if isinstance(root, str):
                # A relative URL is a defect (reported above) but still followed, as a browser would resolve it.
                roots[urljoin(self.http.base_url + "/", root)] = str(endpoint.get("entryType", ""))
        if roots:
            return roots
        for path in DEFAULT_MODEL_PATHS:
            answer = self.http.get(path)
            if answer.status == 200 and answer.json_ok:
                roots[self.http.url(path)] = _entity_of(answer.body) or path
        self.check("entry-types-discovered", bool(roots), "no entry type found (no /map, no default-model path)")
        return roots

    def entry_type(self, root: str, entity: str) -> None:
        key = root.rstrip("/").rsplit("/", 1)[-1]
        self.report.entities[key] = entity
        answers: dict[tuple[str, str], Answer] = {}
        for granularity in GRANULARITIES:
            get = self.http.get(root, {"requestedGranularity": granularity})
            post = self.http.post(root, _body(granularity))
            for method, answer in (("GET", get), ("POST", post)):
                answers[(method, granularity)] = answer
                name = f"{method.lower()}-{granularity}"
                if self.schema_check(name, answer, key):
                    returned = answer.body["meta"].get("returnedGranularity")
                    self.check(
                        f"{name}-granularity",
                        _RANK.get(returned, 9) <= _RANK[granularity],
                        f"asked for {granularity}, answered {returned}",
                        answer.url,
                        key,
                    )
                    self._entity_matches(name, answer, entity, key)
            if get.json_ok and post.json_ok:
                a, b = _summary(get.body), _summary(post.body)
                self.check(f"get-post-agree-{granularity}", a == b, f"GET says {a}, POST says {b}", root, key)
        record = answers[("GET", "record")]
        records = _records(record.body) if record.json_ok else []
        self._pagination(root, key, record)
        self._single_entry(root, key, entity, records)
        self._filters(root, key, entity)
        self._errors(root, key)
        self._test_mode(root, key)

    def _entity_matches(self, name: str, answer: Answer, entity: str, key: str) -> None:
        returned = _entity_of(answer.body)
        if entity and returned:
            self.check(
                f"{name}-entity", returned == entity, f"returnedSchemas says {returned}, /map {entity}", answer.url, key
            )

    def _pagination(self, root: str, key: str, first: Answer) -> None:
        if not first.json_ok or first.body.get("meta", {}).get("returnedGranularity") != "record":
            return
        total = _total(first.body)
        pages = []
        for skip in (0, 1):
            answer = self.http.get(root, {"requestedGranularity": "record", "limit": 1, "skip": skip})
            # Only HTTP and JSON here: schema defects are reported by the get-record check, and must not hide
            # pagination defects.
            if not self.check(
                f"page-skip-{skip}", answer.status == 200 and answer.json_ok, f"HTTP {answer.status}", answer.url, key
            ):
                return
            pages.append(answer)
        for answer in pages:
            counts = [len(s.get("results") or []) for s in _result_sets(answer.body)]
            self.check("limit-honoured", all(c <= 1 for c in counts), f"limit=1 gave {counts} records", answer.url, key)
        totals = [_total(p.body) for p in pages]
        self.check(
            "total-stable-across-pages",
            len({total, *totals}) == 1,
            f"numTotalResults {total} unpaginated, {totals} on pages skip=0 and skip=1",
            root,
            key,
        )
        # Pagination is per result set (dataset): one person in two datasets is two records, one in each set.
        first_page, second_page = (_ids_by_set(p.body) for p in pages)
        overlap = {
            f"{set_id}: {sorted(first_page[set_id] & second_page.get(set_id, set()))}"
            for set_id in first_page
            if first_page[set_id] & second_page.get(set_id, set())
        }
        if (total or 0) >= 2:
            self.check("pages-disjoint", not overlap, f"records on both pages of a result set: {overlap}", root, key)

    def _single_entry(self, root: str, key: str, entity: str, records: list[dict]) -> None:
        record_id = next((i for i in map(_record_id, records) if i), None)
        if record_id is None:
            self.check("single-entry", True, "", root, key)  # nothing to look up: the node holds no records
            return
        single = self.http.get(f"{root.rstrip('/')}/{record_id}", {"requestedGranularity": "record"})
        if self.schema_check("single-entry", single, key):
            found = {_record_id(r) for r in _records(single.body)}
            self.check(
                "single-entry-id", record_id in found, f"/{record_id} did not return that record", single.url, key
            )
        post = self.http.post(f"{root.rstrip('/')}/{record_id}", _body("record"))
        self.schema_check("single-entry-post", post, key)
        links = [
            url
            for mapped in self.map_sets.values()
            if mapped.get("entryType") == entity
            for url in _endpoint_urls(mapped)
        ]
        for template in links[:MAX_CROSS_LINKS]:
            url = urljoin(self.http.base_url + "/", template.replace("{id}", record_id))
            self.schema_check(f"cross-link {template.rsplit('/', 1)[-1]}", self.http.get(url), key)

    def _filters(self, root: str, key: str, entity: str) -> None:
        usable = [t for t in self.filter_terms if not t.get("scopes") or entity in t.get("scopes", [])]
        for term in usable[:MAX_FILTERS_TRIED]:
            get = self.http.get(root, {"filters": term["id"], "requestedGranularity": "count"})
            self.schema_check(f"filter {term['id']} (GET)", get, key)
            body = _body("count")
            body["query"]["filters"] = [{"id": term["id"]}]
            self.schema_check(f"filter {term['id']} (POST)", self.http.post(root, body), key)

    def _errors(self, root: str, key: str) -> None:
        malformed = [
            ("error-bad-limit", lambda: self.http.get(root, {"limit": "-1"})),
            ("error-bad-granularity", lambda: self.http.get(root, {"requestedGranularity": "everything"})),
            ("error-unparsable-body", lambda: self.http.post(root, None, raw=b'{"meta": {')),
            ("error-wrong-body-type", lambda: self.http.post(root, {"meta": {"apiVersion": API_VERSION}, "query": []})),
        ]
        for name, send in malformed:
            answer = send()
            if not self.check(
                name, 400 <= answer.status < 500, f"expected a 4xx status, got {answer.status}", answer.url, key
            ):
                continue
            self.schema_check(f"{name}-envelope", answer, key, kind="error")

    def _test_mode(self, root: str, key: str) -> None:
        answer = self.http.get(root, {"testMode": "true"})
        if not self.schema_check("test-mode", answer, key):
            return
        meta = answer.body.get("meta") or {}
        echoed = meta.get("testMode") is True or (meta.get("receivedRequestSummary") or {}).get("testMode") is True
        self.check("test-mode-echoed", echoed, "testMode=true is not reflected in meta", answer.url, key, warning=True)


# --- small pure helpers ----------------------------------------------------------------------------------------


def _absolute(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _endpoint_urls(endpoint: dict) -> list[str]:
    related = endpoint.get("endpoints")
    items = related.values() if isinstance(related, dict) else []
    return [e["url"] for e in items if isinstance(e, dict) and isinstance(e.get("url"), str)]


def _map_urls(sets: dict[str, dict]) -> Iterable[tuple[str, str]]:
    for endpoint in sets.values():
        for key in ("rootUrl", "singleEntryUrl", "filteringTermsUrl", "openAPIEndpointsDefinition"):
            if isinstance(endpoint.get(key), str):
                yield key, endpoint[key]
        for url in _endpoint_urls(endpoint):
            yield "endpoint", url


def _body(granularity: str) -> dict:
    return {"meta": {"apiVersion": API_VERSION}, "query": {"requestedGranularity": granularity}}


def _entity_of(body: dict) -> str:
    schemas = (body.get("meta") or {}).get("returnedSchemas")
    first = schemas[0] if isinstance(schemas, list) and schemas and isinstance(schemas[0], dict) else {}
    return str(first.get("entityType") or "")


def _summary(body: dict) -> tuple:
    summary = body.get("responseSummary") if isinstance(body.get("responseSummary"), dict) else {}
    return summary.get("exists"), summary.get("numTotalResults")


def _total(body: dict) -> Any:
    return _summary(body)[1]


def _result_sets(body: dict) -> list[dict]:
    response = body.get("response") if isinstance(body.get("response"), dict) else {}
    sets = response.get("resultSets")
    return [s for s in sets if isinstance(s, dict)] if isinstance(sets, list) else []


def _records(body: Any) -> list[dict]:
    if not isinstance(body, dict):
        return []
    return [r for s in _result_sets(body) for r in (s.get("results") or []) if isinstance(r, dict)]


def _ids_by_set(body: dict) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for result_set in _result_sets(body):
        ids = {_record_id(r) for r in result_set.get("results") or [] if isinstance(r, dict)} - {None}
        out.setdefault(str(result_set.get("id")), set()).update(ids)
    return out


def _record_id(record: dict) -> str | None:
    for key in ("id", "variantInternalId"):
        if isinstance(record.get(key), str) and record[key]:
            return record[key]
    return None


def verify(base_url: str, *, token: str | None = None, timeout: float = 10.0) -> VerifyReport:
    """Run every check against the Beacon v2 node at `base_url` (the Beacon root, e.g. https://host/api)."""
    client = HttpClient(base_url, token=token, timeout=timeout)
    report = VerifyReport(url=client.base_url)
    verifier = _Verifier(client, report)
    verifier.informational()
    for root, entity in verifier.discover().items():
        verifier.entry_type(root, entity)
    report.requests = client.requests
    return report
