"""Authorization across the network: the caller's bearer token goes unchanged to every peer (never added
when absent, never replaced), and a passport that grants one peer's CONTROLLED dataset yields record-level
answers from that peer only. All nodes trust the same (test) issuer, as a network sharing one AAI would."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.beacon.fake_store import sample_store
from tests.network.conftest import faulty_peer, network_app, serve

ISSUER = "https://aai.example.org/"
VISA_ISSUER = "https://visas.example.org/"
AUDIENCE = "https://network.example.org"
GRANT = "urn:grant:de-controlled"
CHR22 = {"referenceName": "22", "start": "0", "end": "100000"}  # variants held only in dataset ds1


@pytest.fixture(scope="module")
def issuer(tmp_path_factory):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", use="sig")
    jwks = tmp_path_factory.mktemp("jwks") / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))

    def sign(**claims) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "sub": "researcher-7", "aud": AUDIENCE, "iat": now, "exp": now + 300, **claims}
        return jwt.encode(
            {k: v for k, v in body.items() if v is not None}, key, algorithm="RS256", headers={"kid": "k1"}
        )

    def passport(value: str) -> str:
        visa = {
            "type": "ControlledAccessGrants",
            "value": value,
            "source": "https://dac.example",
            "by": "dac",
            "asserted": 1,
        }
        # the broker links the holder's identity at the visa issuer (GA4GH LinkedIdentities), or the visa is not theirs
        link = {**visa, "type": "LinkedIdentities", "value": f"researcher-7,{quote(VISA_ISSUER, safe='')}"}
        grant = sign(iss=VISA_ISSUER, aud=None, ga4gh_visa_v1=visa)
        return sign(ga4gh_passport_v1=[grant, sign(aud=None, ga4gh_visa_v1=link)])

    section = {
        "issuers": [
            {"issuer": ISSUER, "jwks_file": str(jwks)},
            {"issuer": VISA_ISSUER, "jwks_file": str(jwks), "visas_only": True},
        ],
        "audiences": [AUDIENCE],
    }
    return {"sign": sign, "passport": passport, "section": section}


def secure_peer(tmp_path, beacon_id: str, datasets: list[dict], section: dict):
    from app import create_app

    app = create_app(
        {
            "data_dir": tmp_path / beacon_id,
            "secret_key": "11" * 32,
            "testing": True,
            "node": {"id": beacon_id, "base_url": AUDIENCE},
            "datasets": datasets,
            "security": section,
        }
    )
    app.extensions["gateway"].variants = sample_store()
    return app


def test_the_bearer_token_is_forwarded_unchanged_and_never_added(issuer, tmp_path):
    seen_a, seen_b = [], []
    token = issuer["sign"]()
    with faulty_peer("ok", seen=seen_a) as a, faulty_peer("ok", seen=seen_b) as b:
        app = network_app({"peers": [a, b]}, tmp_path=tmp_path, extra={"security": issuer["section"]})
        client = app.test_client()
        assert (
            client.get("/api/g_variants", query_string=CHR22, headers={"Authorization": f"Bearer {token}"}).status_code
            == 200
        )
        assert client.get("/api/g_variants", query_string=CHR22).status_code == 200
        client.get("/api/g_variants", query_string=CHR22, headers={"Cookie": "session=1", "X-Request-ID": "r-1"})
    for seen in (seen_a, seen_b):
        queries = [s for s in seen if "/g_variants" in s["path"]]
        assert len(queries) == 3
        assert queries[0]["headers"].get("Authorization") == f"Bearer {token}"
        assert all("Authorization" not in q["headers"] for q in queries[1:])
        assert "Cookie" not in queries[2]["headers"] and queries[2]["headers"].get("X-Request-ID") == "r-1"
        # metadata is fetched without any caller's credential
        assert all("Authorization" not in s["headers"] for s in seen if "/g_variants" not in s["path"])


def test_a_controlled_grant_gives_records_from_its_peer_only(issuer, tmp_path, official):
    section = issuer["section"]
    de = secure_peer(
        tmp_path,
        "org.example.de",
        [{"id": "ds1", "security_level": "CONTROLLED", "policy": {"grants": [GRANT]}}],
        section,
    )
    # the other peer holds ds1 too, but grants it to nobody this caller can show
    fr = secure_peer(tmp_path, "org.example.fr", [{"id": "ds1", "security_level": "CONTROLLED"}], section)
    with serve(de) as de_url, serve(fr) as fr_url:
        peers = [
            {"url": de_url + "/api", "beaconId": "org.example.de"},
            {"url": fr_url + "/api", "beaconId": "org.example.fr"},
        ]
        client = network_app({"peers": peers}, tmp_path=tmp_path, extra={"security": section}).test_client()
        query = {**CHR22, "requestedGranularity": "record"}
        granted = client.get(
            "/api/g_variants", query_string=query, headers={"Authorization": f"Bearer {issuer['passport'](GRANT)}"}
        )
        anonymous = client.get("/api/g_variants", query_string=query)
    body = granted.get_json()
    assert granted.status_code == 200 and official(body) == []
    assert body["meta"]["returnedGranularity"] == "record" and body["responseSummary"]["exists"] is True
    sets = body["response"]["resultSets"]
    assert sets and {rs["beaconId"] for rs in sets} == {"org.example.de"}
    assert sum(len(rs["results"]) for rs in sets) > 0
    denied = anonymous.get_json()
    assert official(denied) == []
    assert denied["responseSummary"]["exists"] is False or denied["meta"]["returnedGranularity"] == "boolean"
    assert not (denied.get("response") or {}).get("resultSets")
