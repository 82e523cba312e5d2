"""Fuzzing every HTTP endpoint and every CLI input (issue 12 §4): no 5xx, no unhandled exception, no process death,
every answer within the node's work limit and in its surface's error dialect.

Inputs mix random bytes with near-valid documents (JSON, YAML, VCF headers, Beacon requests, FHIR bundles) and
the hostile shapes of the attack matrix (aliases, deep nesting, huge numbers, NUL, long ids), so that the parsers
and the checks behind them are reached, not only the first syntax check. Runtime is bounded by example counts
(well under a minute together); set GATEWAY_FUZZ_REPORT=path to write the figures the README quotes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import OPERATOR_TOKEN

pytestmark = pytest.mark.slow  # several seconds: pytest-xdist starts it first (tests/conftest.py)

OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
LIMIT_S = 25.0  # the work limit (20 s) plus the request's own overhead
STATS = {"requests": 0, "server_errors": 0, "longest_s": 0.0, "cli_runs": 0, "cli_crashes": 0}

# --- inputs ------------------------------------------------------------------------------------------------------

nasty_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["a" * 300, "x\x00y", "../../etc/passwd", "HP:0000118", "excluded:HP:0000001", "%", "\u202e", "1" * 5000]
    ),
)
json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20), nasty_text
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "query",
                    "filters",
                    "resourceType",
                    "entry",
                    "subject",
                    "metaData",
                    "meta",
                    "pagination",
                    "limit",
                    "requestParameters",
                    "phenotypicFeatures",
                    "type",
                    "resource",
                ]
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=20,
)
documents = st.one_of(
    json_value.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    st.sampled_from(
        [
            b'a: &a ["x","x","x","x"]\nb: [*a,*a,*a,*a]\n',
            b"a: " + b"[" * 3000,
            b'{"a": ' + b"1" * 5000 + b"}",
            b'{"id": "a\\u0000b"}',
            b"[" * 10000 + b"]" * 10000,
            b"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr1\t1\t.\tA\tG\t.\t.\t.\n",
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage",
            b'{"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "Patient"}}]}',
            b'{"query": {"filters": [{"id": "HP:0000118"}]}, "meta": {"apiVersion": "v2.0"}}',
            b"S1\tMRN-1\nS2\n",
        ]
    ),
)
query_names = st.sampled_from(
    [
        "dataset",
        "datasetIds",
        "filters",
        "skip",
        "limit",
        "requestedGranularity",
        "referenceName",
        "start",
        "end",
        "assemblyId",
        "type",
        "profile",
        "hpo",
        "name",
        "organSystem",
        "sample_map",
        "assembly",
        "offset",
        "includeResultsetResponses",
        "testMode",
        "alternateBases",
        "referenceBases",
        "variantType",
        "geneId",
    ]
)
query = st.lists(st.tuples(query_names, nasty_text), max_size=4)
headers = st.fixed_dictionaries(
    {},
    optional={
        "Authorization": st.one_of(
            st.just(OPERATOR["Authorization"]),
            st.just("Bearer a.b.c"),
            # printable ASCII only: a header value cannot carry a line break (no client can send one)
            st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30).map(
                lambda t: "Bearer " + t
            ),
        ),
        # a line break cannot be sent inside a header (the test client refuses to build it): drop it
        "X-Request-ID": nasty_text.map(lambda t: t.replace("\r", "").replace("\n", "")),
        "Content-Type": st.sampled_from(
            ["application/json", "application/fhir+json", "text/plain", "application/gzip", "application/x-yaml", "x/y"]
        ),
        "Accept": st.sampled_from(["application/json", "*/*", "text/html"]),
    },
)


def _fill(rule: str, values: list[str]) -> str:
    """The rule's path with its <converters> replaced by (URL-quoted) fuzzed values."""
    from urllib.parse import quote

    parts, i = [], 0
    for piece in rule.split("<"):
        if ">" in piece:
            _, rest = piece.split(">", 1)
            parts.append(quote(values[i % len(values)] or "x", safe="") + rest)
            i += 1
        else:
            parts.append(piece)
    return "".join(parts)


def _routes(app) -> list[tuple[str, str]]:
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        out += [(rule.rule, method) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return sorted(out)


@pytest.fixture(scope="module")
def fuzz_node(tmp_path_factory):
    from app import create_app

    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    app = create_app(
        {
            "data_dir": data_dir,
            "secret_key": "00" * 32,
            "operator_tokens": [OPERATOR_TOKEN],
            "testing": True,
            "demo": True,  # a real cohort behind the Beacon, so queries reach the store
            "node": {"id": "org.example.fuzz", "name": "Fuzz", "base_url": "http://localhost"},
        }
    )
    yield app
    app.extensions["gateway"].store.close()
    report = os.environ.get("GATEWAY_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps(STATS, indent=1))


def _check_answer(resp, path: str, elapsed: float) -> None:
    STATS["requests"] += 1
    STATS["longest_s"] = max(STATS["longest_s"], round(elapsed, 3))
    if resp.status_code >= 500:
        STATS["server_errors"] += 1
    text = resp.get_data(as_text=True)
    assert resp.status_code < 500, f"{path}: {resp.status_code} {text[:300]}"
    assert elapsed < LIMIT_S, f"{path}: {elapsed:.1f} s"
    assert "Traceback" not in text
    if resp.status_code >= 400 and resp.mimetype.endswith("json"):
        body = json.loads(text)
        if path.startswith("/fhir"):
            assert body["resourceType"] == "OperationOutcome"
        elif path.startswith("/api"):
            assert body["error"]["errorCode"] == resp.status_code
        else:
            assert "error" in body or "issues" in body


def test_every_route_is_fuzzed(fuzz_node):
    """The route list the fuzzer draws from is the application's own: a new endpoint is fuzzed without asking."""
    routes = _routes(fuzz_node)
    assert (
        len(routes) >= 25 and ("/validate", "POST") in routes and ("/fhir/<resource_type>/$validate", "POST") in routes
    )


@settings(
    max_examples=int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
    database=None,
)
@given(data=st.data())
def test_no_input_gives_a_5xx_or_stalls(fuzz_node, data):
    rule, method = data.draw(st.sampled_from(_routes(fuzz_node)))
    path = _fill(rule, data.draw(st.lists(nasty_text, min_size=1, max_size=3)))
    sent_headers = data.draw(headers)
    body = data.draw(documents) if method in ("POST", "PUT", "PATCH") else None
    client = fuzz_node.test_client()
    started = time.monotonic()
    resp = client.open(path, method=method, query_string=data.draw(query), headers=sent_headers, data=body)
    _check_answer(resp, path, time.monotonic() - started)
    assert client.get("/health").status_code == 200  # the "worker" still answers


# --- the CLI ------------------------------------------------------------------------------------------------------

CLI_COMMANDS = [
    ["validate", "{file}"],
    ["validate", "--type", "phenopacket", "{file}"],
    ["validate", "--type", "vcf", "{file}"],
    ["ingest", "fhir", "{file}", "--dataset", "{text}"],
    ["ingest", "phenopacket", "{file}"],
    ["ingest", "vcf", "{file}", "--dataset", "{text}", "--assembly", "GRCh38"],
    ["ingest", "vcf", "{vcf}", "--dataset", "d1", "--sample-map", "{file}"],
    ["convert", "fhir", "{file}"],
    ["erase", "--subject", "{text}"],
    ["erase", "--dataset", "{text}"],
]


@settings(
    max_examples=int(os.environ.get("GATEWAY_FUZZ_CLI_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
    database=None,
)
@given(command=st.sampled_from(CLI_COMMANDS), content=documents, text=nasty_text)
def test_no_cli_input_raises(tmp_path_factory, command, content, text):
    from gateway.cli import main

    work = tmp_path_factory.mktemp("cli")
    source = work / "input.json"
    source.write_bytes(content)
    vcf = work / "ok.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n")
    argv = [a.format(file=source, vcf=vcf, text=text.replace("\x00", "")) for a in command]
    env = {"GATEWAY_DATA_DIR": str(work / "data"), "GATEWAY_SECRET_KEY": "00" * 32}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    STATS["cli_runs"] += 1
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            try:
                status = main(argv)
            except SystemExit as exc:  # argparse refusing an argument is an answer, not a crash
                status = exc.code
            except Exception:
                STATS["cli_crashes"] += 1
                raise
        assert status in (0, 1, 2), (argv, status)
        assert "Traceback" not in err.getvalue(), err.getvalue()[-500:]
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
