"""Token verification, case by case: every forged or misused token is refused with a reason."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from gateway.security.tokens import JWKSCache, TokenError, TokenVerifier
from tests.security.sechelpers import AUDIENCE, ISSUER, NETWORK_AUDIENCE, security_section


@pytest.fixture
def verifier(jwks_files):
    return TokenVerifier.from_settings(security_section(jwks_files))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_valid_rs256_and_es256_token_is_accepted(verifier, mint):
    for key in ("rsa", "ec"):
        verified = verifier.verify(mint.token(key=key))
        assert verified.sub == "researcher-1" and verified.issuer == ISSUER


def test_a_token_for_the_network_audience_is_accepted(verifier, mint):
    assert verifier.verify(mint.token(aud=NETWORK_AUDIENCE)).sub == "researcher-1"


def _reason(verifier, token) -> str:
    with pytest.raises(TokenError) as caught:
        verifier.verify(token)
    return caught.value.reason


def test_expired(verifier, mint):
    assert "expired" in _reason(verifier, mint.token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200))


def test_not_yet_valid_by_nbf_and_by_iat(verifier, mint):
    now = int(time.time())
    assert "not valid yet" in _reason(verifier, mint.token(nbf=now + 3600))
    assert "not valid yet" in _reason(verifier, mint.token(iat=now + 3600, exp=now + 7200))


def test_alg_none(verifier, mint):
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "rsa-1"}).encode())
    good = mint.token()
    payload = good.split(".")[1]
    assert "not accepted" in _reason(verifier, f"{header}.{payload}.")


def test_hs256_signed_with_the_public_key(verifier, mint, keys):
    from cryptography.hazmat.primitives import serialization

    pem = (
        keys["rsa"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    payload = mint.token().split(".")[1]
    import hashlib
    import hmac

    signature = _b64(hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    assert "not accepted" in _reason(verifier, f"{header}.{payload}.{signature}")


def test_unknown_kid(verifier, mint):
    assert "unknown key" in _reason(verifier, mint.token(kid="not-a-key"))


def test_foreign_key_under_a_known_kid(verifier, mint):
    assert "signature" in _reason(verifier, mint.token(key="foreign"))


def test_foreign_jku(verifier, mint):
    assert "jku" in _reason(verifier, mint.token(headers={"jku": "https://evil.example.com/jwks"}))


def test_wrong_issuer(verifier, mint):
    assert "issuer" in _reason(verifier, mint.token(iss="https://evil.example.com/"))


def test_visa_issuer_cannot_sign_access_tokens(verifier, mint):
    assert "issuer" in _reason(verifier, mint.token(key="visa", iss="https://visas.example.org/"))


def test_wrong_audience_and_missing_audience(verifier, mint):
    assert "audience" in _reason(verifier, mint.token(aud="https://other-node.example.org"))
    assert "aud" in _reason(verifier, mint.token(aud=None))


@pytest.mark.parametrize("claim", ["exp", "iat", "sub"])
def test_required_claims(verifier, mint, claim):
    assert claim in _reason(verifier, mint.token(**{claim: None}))


def test_tampered_payload(verifier, mint):
    header, payload, signature = mint.token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "someone-else"
    assert "signature" in _reason(verifier, f"{header}.{_b64(json.dumps(claims).encode())}.{signature}")


def test_garbage(verifier):
    assert "malformed" in _reason(verifier, "not-a-jwt")
    assert "malformed" in _reason(verifier, "a.b.c")


def test_visas_each_verified_on_their_own(verifier, mint):
    good = mint.visa("urn:grant:controlled")
    forged = mint.visa("urn:grant:other", key="foreign", kid="visa-1")  # wrong key under the visa issuer's kid
    conditional = mint.visa("urn:grant:cond", conditions=[[{"type": "AffiliationAndRole", "value": "x"}]])
    expired = mint.visa("urn:grant:old", exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)
    untrusted = mint.visa("urn:grant:evil", iss="https://evil.example.com/")
    verified = verifier.verify(mint.passport(good, forged, conditional, expired, untrusted, "not-a-jwt"))
    assert [v.value for v in verified.visas if v.type == "ControlledAccessGrants"] == ["urn:grant:controlled"]
    assert verified.visas_ignored == 5


def test_unknown_kid_refreshes_the_key_set_once_per_cooldown(jwks_files, mint, keys):
    now = [1000.0]
    loads = []

    class CountingCache(JWKSCache):
        def _load(self, source):
            loads.append(source)
            return super()._load(source)

    verifier = TokenVerifier.from_settings(security_section(jwks_files), jwks=CountingCache(clock=lambda: now[0]))
    verifier.verify(mint.token())
    assert len(loads) == 1
    for _ in range(3):
        with pytest.raises(TokenError):
            verifier.verify(mint.token(kid="rotated"))
    assert len(loads) == 1  # inside the cool-down: no refetch storm
    now[0] += 61
    with pytest.raises(TokenError):
        verifier.verify(mint.token(kid="rotated"))
    assert len(loads) == 2


def test_no_audience_configured_accepts_no_token(jwks_files, mint):
    verifier = TokenVerifier.from_settings(security_section(jwks_files, audiences=[]))
    with pytest.raises(TokenError):
        verifier.verify(mint.token())


def test_pyjwt_refuses_hmac_with_pem_keys_anyway(keys):
    # Defence in depth: even if an algorithm list were misconfigured, PyJWT rejects a PEM key as HMAC secret.
    from cryptography.hazmat.primitives import serialization

    pem = (
        keys["rsa"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(jwt.InvalidKeyError):
        jwt.encode({"a": 1}, pem, algorithm="HS256")


def test_audience_is_never_taken_from_the_token(verifier, mint):
    token = mint.token(aud=["https://attacker.example.org"])
    assert "audience" in _reason(verifier, token)
    assert AUDIENCE not in token
