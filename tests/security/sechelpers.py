"""Helpers and fixtures for the security tests: keys, JWKS files, token minting, nodes with a security section.

Keys and tokens are generated here; JWKS documents are files (no network).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.security.secfakes import FakeVariantStore

ISSUER = "https://login.example.org/"
VISA_ISSUER = "https://visas.example.org/"
AUDIENCE = "https://node.example.org"
NETWORK_AUDIENCE = "https://network.example.org"
OPERATOR_TOKEN = "security-test-operator-token"
KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def _public_jwk(private, kid: str) -> dict:
    algorithm = jwt.algorithms.RSAAlgorithm if isinstance(private, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
    jwk = json.loads(algorithm.to_jwk(private.public_key()))
    jwk.update(kid=kid, use="sig")
    return jwk


@pytest.fixture(scope="session")
def keys():
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec": ec.generate_private_key(ec.SECP256R1()),
        "visa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "foreign": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }


@pytest.fixture(scope="session")
def jwks_files(keys, tmp_path_factory):
    root = tmp_path_factory.mktemp("jwks")
    login = root / "login.json"
    login.write_text(json.dumps({"keys": [_public_jwk(keys["rsa"], "rsa-1"), _public_jwk(keys["ec"], "ec-1")]}))
    visas = root / "visas.json"
    visas.write_text(json.dumps({"keys": [_public_jwk(keys["visa"], "visa-1")]}))
    return {"login": login, "visas": visas}


class Minter:
    def __init__(self, keys):
        self.keys = keys

    def token(self, key="rsa", kid=None, alg=None, headers=None, **claims) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "sub": "researcher-1", "aud": AUDIENCE, "iat": now, "exp": now + 300, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        alg = alg or ("ES256" if key == "ec" else "RS256")
        kid = kid or {"rsa": "rsa-1", "ec": "ec-1", "visa": "visa-1", "foreign": "rsa-1"}[key]
        return jwt.encode(body, self.keys[key], algorithm=alg, headers={"kid": kid, **(headers or {})})

    def visa(self, value: str, type_="ControlledAccessGrants", key="visa", conditions=None, **claims) -> str:
        body = {"type": type_, "value": value, "source": "https://dac.example.org", "by": "dac", "asserted": 1}
        if conditions is not None:
            body["conditions"] = conditions
        claims.setdefault("iss", VISA_ISSUER)
        claims.setdefault("aud", None)
        return self.token(key=key, ga4gh_visa_v1=body, **claims)

    def passport(self, *visas: str, **claims) -> str:
        return self.token(ga4gh_passport_v1=list(visas), **claims)


@pytest.fixture(scope="session")
def mint(keys):
    return Minter(keys)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def security_section(jwks_files, **overrides) -> dict:
    section = {
        "issuers": [
            {
                "issuer": ISSUER,
                "jwks_file": str(jwks_files["login"]),
                "allowed_jku": ["https://login.example.org/jwks"],
            },
            {"issuer": VISA_ISSUER, "jwks_file": str(jwks_files["visas"]), "visas_only": True},
        ],
        "audiences": [AUDIENCE, NETWORK_AUDIENCE],
        "operator_roles": ["gateway-operator"],
        "trusted_proxies": ["10.0.0.0/8"],
        "budget": {"window_seconds": 60, "anonymous": 1000, "registered": 1000},
    }
    section.update(overrides)
    return section


def node_config(tmp_path: Path, jwks_files, datasets, **security) -> dict:
    return {
        "data_dir": tmp_path / "data",
        "secret_key": KEY_HEX,
        "operator_tokens": [OPERATOR_TOKEN],
        "testing": True,
        "node": {"id": "org.example.secure", "name": "Secure node", "base_url": AUDIENCE},
        "datasets": datasets,
        "security": security_section(jwks_files, **security),
    }


def make_node(tmp_path, jwks_files, datasets, variants=None, **security):
    from app import create_app

    app = create_app(node_config(tmp_path, jwks_files, datasets, **security))
    if variants is not None:
        app.extensions["gateway"].variants = variants
    return app


def audit_records(app) -> list[dict]:
    return list(app.extensions["gateway"].security.audit.records())


@pytest.fixture
def fake_variants():
    return FakeVariantStore.standard()


@pytest.fixture
def secure_node(tmp_path, jwks_files, fake_variants):
    """ds-public: a PUBLIC dataset of 60 samples; ds-small: PUBLIC with 10; ds-controlled: CONTROLLED, granted by
    the visa value 'urn:grant:controlled'."""
    datasets = [
        {"id": "ds-public", "security_level": "PUBLIC"},
        {"id": "ds-small", "security_level": "PUBLIC"},
        {"id": "ds-controlled", "security_level": "CONTROLLED", "policy": {"grants": ["urn:grant:controlled"]}},
    ]
    app = make_node(tmp_path, jwks_files, datasets, fake_variants)
    yield app
    app.extensions["gateway"].store.close()
