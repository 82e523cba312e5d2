"""Malformed requests: a 400 beaconErrorResponse that names the parameter, never a 500."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.beacon.g_variants import G_VARIANTS, parse_parameters, variant_classes
from gateway.beacon.request import BeaconRequestError, parse_get, parse_post

BAD_GET = [
    ("referenceName=22&start=abc&alternateBases=A", "?start", "integer"),
    ("referenceName=22&start=-1&alternateBases=A", "?start", "≥ 0"),
    ("referenceName=22&start=10&end=5", "?end", "greater than start"),
    ("referenceName=22&start=1,2&end=5", "?end", "bracket"),
    ("referenceName=22&start=5,1&end=6,8", "?start", "min > max"),
    ("referenceName=22&start=1,2,3&end=5", "?start", "two"),
    ("start=5&alternateBases=A", "?referenceName", "referenceName"),
    ("referenceName=22&end=5", "?end", "needs start"),
    ("referenceName=22&start=5", "?alternateBases", "alternateBases"),
    ("referenceName=22&start=5&alternateBases=XYZ", "?alternateBases", "IUPAC"),
    ("referenceName=22&start=5&end=9&variantType=WEIRD", "?variantType", "variantType"),
    ("aminoacidChange=V600E", "?aminoacidChange", "geneId"),
    ("geneId=BRAF&variantMinLength=10&variantMaxLength=2", "?variantMinLength", "greater"),
    ("assemblyId=hg12", "?assemblyId", "assembly"),
    ("assemblyId=GRCh37&referenceName=NC_000022.11", "?assemblyId", "contradicts"),
    ("genomicAlleleShortForm=NM_004006.2:c.4375C>T", "?genomicAlleleShortForm", "HGVS"),
    ("genomicAlleleShortForm=NC_000017.11:g.100_99del", "?genomicAlleleShortForm", "reversed"),
    ("referenceName=22;drop table&start=1&alternateBases=A", "?referenceName", "invalid value"),
    ("geneId=BRAF&requestedGranularity=all", "?requestedGranularity", "one of"),
    ("geneId=BRAF&includeResultsetResponses=SOME", "?includeResultsetResponses", "one of"),
    ("geneId=BRAF&limit=-3", "?limit", "≥ 0"),
    ("geneId=BRAF&testMode=maybe", "?testMode", "true or false"),
    ("geneId=BRAF&datasetIds=nope", "datasetIds", "unknown dataset"),
    ("geneId=BRAF&mateName=chr9", "?mateName", "not supported"),
]


@pytest.mark.parametrize(("query", "where", "words"), BAD_GET, ids=[b[0][:40] for b in BAD_GET])
def test_bad_get_is_a_precise_400(beacon_client, official, query, where, words):
    response = beacon_client.get(f"/api/g_variants?{query}")
    assert response.status_code == 400, response.json
    message = response.json["error"]["errorMessage"]
    assert words in message and where in message
    assert response.json["error"]["errorCode"] == 400
    assert official(response.json) == []


BAD_POST = [
    ([1, 2], "JSON object"),
    ({"query": {"requestParameters": {"start": True, "referenceName": "1"}}}, "not a boolean"),
    ({"query": {"requestParameters": {"start": 1.5, "referenceName": "1"}}}, "integer"),
    ({"query": {"requestParameters": {"g_variant": {"geneId": "A"}, "geneId": "B"}}}, "different values"),
    ({"query": {"requestParameters": "x"}}, "requestParameters must be an object"),
    ({"query": {"pagination": {"skip": "a"}}}, "/query/pagination/skip"),
    ({"query": {"pagination": {"limit": True}}}, "/query/pagination/limit"),
    ({"query": {"filters": [{"ids": "HP:1"}]}}, "/query/filters/0"),
    ({"query": {"filters": "HP:0001250"}}, "/query/filters"),
    ({"meta": "x"}, "meta must be an object"),
    ({"meta": {"apiVersion": "two"}}, "apiVersion"),
    ({"query": {"requestParameters": {"geneId": "A" * 300}}}, "longer than"),
]


@pytest.mark.parametrize(("body", "words"), BAD_POST, ids=[str(i) for i in range(len(BAD_POST))])
def test_bad_post_is_a_precise_400(beacon_client, official, body, words):
    response = beacon_client.post("/api/g_variants", json=body)
    assert response.status_code == 400
    assert words in response.json["error"]["errorMessage"]
    assert official(response.json) == []


@pytest.mark.parametrize(
    "raw", [b"{", b'{"meta": {}, "meta": {}}', b'{"query": {"pagination": {"skip": NaN}}}', b"[" * 200 + b"]" * 200]
)
def test_unparsable_json_is_a_400(beacon_client, official, raw):
    response = beacon_client.post("/api/g_variants", data=raw, content_type="application/json")
    assert response.status_code == 400
    assert official(response.json) == []


def test_repeated_get_parameter_is_refused(beacon_client):
    response = beacon_client.get("/api/g_variants?geneId=A&geneId=B")
    assert response.status_code == 400 and "different values" in response.json["error"]["errorMessage"]


@pytest.mark.parametrize(
    ("value", "classes"),
    [
        ("SNP", {"SNP"}),
        ("snp", {"SNP"}),
        ("INDEL", {"INDEL", "INS", "DEL"}),
        ("SO:0001483", {"SNP"}),
        ("SO:0000159", {"DEL"}),
        ("SO:0001019", {"CNV", "DEL", "DUP"}),
        ("EFO:0030067", {"DEL", "CNV"}),
        ("efo:0030070", {"DUP", "CNV"}),
        ("XYZ", None),
    ],
)
def test_variant_type_table(value, classes):
    found = variant_classes(value)
    assert (set(found) if found else None) == classes


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ("22", "22"),
        ("chr22", "22"),
        ("NC_000022.11", "22"),
        ("refseq:NC_000022.11", "22"),
        ("chrX", "X"),
        ("chrM", "MT"),
    ],
)
def test_reference_name_forms(form, expected):
    parsed = parse_parameters({"referenceName": form, "geneId": "X"}, "?")
    assert parsed.query.reference_name == expected


@pytest.mark.parametrize(
    ("hgvs", "fields"),
    [
        ("NC_000017.11:g.43045712G>A", {"start": 43045711, "reference_bases": "G", "alternate_bases": "A"}),
        ("NC_000017.10:g.100_102del", {"start": 98, "reference_bases": "NNNN", "alternate_bases": "N"}),
        ("NC_000017.11:g.100del", {"start": 98, "reference_bases": "NN", "alternate_bases": "N"}),
        ("NC_000017.11:g.100_101insAT", {"start": 99, "reference_bases": "N", "alternate_bases": "NAT"}),
        ("NC_000017.11:g.100_101delinsG", {"start": 99, "reference_bases": "NN", "alternate_bases": "G"}),
    ],
)
def test_hgvs_short_forms_become_vcf_style_sequence_queries(hgvs, fields):
    query = parse_parameters({"genomicAlleleShortForm": hgvs}, "?").query
    assert query.reference_name == "17"
    assert query.assembly == ("GRCh37" if ".10:" in hgvs else "GRCh38")
    assert {k: getattr(query, k) for k in fields} == fields


def test_skip_is_in_pages():
    request = parse_post(G_VARIANTS, {"query": {"pagination": {"skip": 3, "limit": 7}, "requestParameters": {}}})
    assert request.offset == 21
    assert parse_get(G_VARIANTS, {"limit": ["0"]}).limit == 1000  # 0: everything, capped


_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=20)
)
_json = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_param_names = st.sampled_from(
    ["referenceName", "start", "end", "referenceBases", "alternateBases", "variantType", "geneId", "aminoacidChange",
     "genomicAlleleShortForm", "assemblyId", "variantMinLength", "variantMaxLength", "datasetIds"]
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(_param_names, _json, max_size=5), granularity=_json)
def test_random_post_bodies_never_500(beacon_client, params, granularity):
    body = {"query": {"requestParameters": params, "requestedGranularity": granularity}}
    response = beacon_client.post("/api/g_variants", json=body)
    assert response.status_code in (200, 400)
    assert ("error" in response.json) is (response.status_code == 400)


def test_parser_raises_typed_error():
    with pytest.raises(BeaconRequestError) as info:
        parse_parameters({"start": "x"}, "/query/requestParameters/")
    assert info.value.issues[0].location == "/query/requestParameters/start"
