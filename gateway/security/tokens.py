"""Bearer-token verification: OIDC access tokens and GA4GH Passports, with PyJWT.

Nothing in a token is trusted before its signature is checked with a key of an
issuer the operator listed. In particular the token never chooses:
- the algorithm (pinned to RS256/ES256, so `none` and HS256-with-the-public-key fail),
- the key source (`jku` must be one the issuer's configuration allows; keys are fetched
  from the configured JWKS otherwise),
- the audience (it must name one of the node's configured audiences).
Each GA4GH visa inside a passport is verified on its own; a visa that fails is ignored
and logged (by reason only, never its content). A visa carrying `conditions` is honoured
only when every condition clause is one this node understands (a clause on the configured
intended-use visa type, `const:` values) and one of its alternatives is met by the passport's
other verified visas; any other condition makes the visa ignored and logged.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jwt
from jwt import PyJWK

from gateway.errors import GatewayError
from gateway.security.data_use import DEFAULT_USE_VISA_TYPE

log = logging.getLogger(__name__)

ALGORITHMS = ("RS256", "ES256")
_KEY_TYPE_OF_ALG = {"RS256": "RSA", "ES256": "EC"}
REQUIRED_CLAIMS = ("exp", "iat", "iss", "sub")
DEFAULT_LEEWAY_S = 30
JWKS_TTL_S = 3600
JWKS_REFRESH_COOLDOWN_S = 60
FETCH_TIMEOUT_S = 5
MAX_TOKEN_BYTES = 16 * 1024
MAX_VISAS = 200


class TokenError(GatewayError):
    """A presented token failed verification. `reason` is short and safe to show to the caller."""

    code = "invalid_token"

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class IssuerConfig:
    issuer: str
    jwks_url: str | None = None
    jwks_file: str | None = None
    allowed_jku: tuple[str, ...] = ()
    visas_only: bool = False  # trusted to sign visas, not access tokens


@dataclass(frozen=True)
class Visa:
    type: str
    value: str
    source: str
    by: str | None
    issuer: str
    conditions: bool
    # the intended uses (visa values of the use type) a conditioned visa was honoured on
    condition_uses: tuple[str, ...] = ()


@dataclass(frozen=True)
class VerifiedToken:
    claims: Mapping[str, Any]
    visas: tuple[Visa, ...] = ()
    visas_ignored: int = 0

    @property
    def sub(self) -> str:
        return str(self.claims["sub"])

    @property
    def issuer(self) -> str:
        return str(self.claims["iss"])


def _fetch_url(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:
        return response.read(1024 * 1024)


class JWKSCache:
    """JWKS documents per source (file or URL), cached; refreshed on an unknown `kid` at most once a cool-down."""

    def __init__(self, fetch: Callable[[str], bytes] = _fetch_url, clock: Callable[[], float] = time.monotonic):
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[float, dict[str, PyJWK]]] = {}  # source -> (loaded at, kid -> key)

    def _load(self, source: str) -> dict[str, PyJWK]:
        raw = Path(source[7:]).read_bytes() if source.startswith("file://") else self._fetch(source)
        document = json.loads(raw)
        keys: dict[str, PyJWK] = {}
        for jwk in document.get("keys", []) if isinstance(document, dict) else []:
            if not isinstance(jwk, dict) or jwk.get("kty") not in ("RSA", "EC") or "d" in jwk:
                continue  # only public RSA/EC keys; a JWKS that leaks a private key is not used for it
            try:
                keys[str(jwk.get("kid", ""))] = PyJWK.from_dict(jwk)
            except jwt.PyJWTError:
                log.warning("JWKS %s: a key could not be read and is skipped", source)
        return keys

    def key(self, source: str, kid: str) -> PyJWK | None:
        now = self._clock()
        with self._lock:
            loaded = self._keys.get(source)
            stale = loaded is None or now - loaded[0] > JWKS_TTL_S
            unknown = loaded is not None and kid not in loaded[1] and now - loaded[0] > JWKS_REFRESH_COOLDOWN_S
            if stale or unknown:
                try:
                    self._keys[source] = (now, self._load(source))
                except (OSError, ValueError) as exc:
                    log.warning("JWKS %s could not be loaded: %s", source, type(exc).__name__)
                    if loaded is None:
                        return None
                    self._keys[source] = (now, loaded[1])  # keep the old keys; retry after the cool-down
            return self._keys[source][1].get(kid)


@dataclass
class TokenVerifier:
    issuers: Mapping[str, IssuerConfig]
    audiences: tuple[str, ...]
    leeway: int = DEFAULT_LEEWAY_S
    jwks: JWKSCache = field(default_factory=JWKSCache)
    use_visa_type: str = DEFAULT_USE_VISA_TYPE

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], jwks: JWKSCache | None = None) -> TokenVerifier:
        """From the `security:` section: issuers [{issuer, jwks_url | jwks_file, allowed_jku}], audiences, leeway."""
        issuers = {}
        for raw in settings.get("issuers") or ():
            issuer = IssuerConfig(
                issuer=str(raw["issuer"]),
                jwks_url=raw.get("jwks_url"),
                jwks_file=str(raw["jwks_file"]) if raw.get("jwks_file") else None,
                allowed_jku=tuple(raw.get("allowed_jku") or ()),
                visas_only=bool(raw.get("visas_only", False)),
            )
            if not (issuer.jwks_url or issuer.jwks_file):
                raise ValueError(f"issuer {issuer.issuer}: give jwks_url or jwks_file")
            issuers[issuer.issuer] = issuer
        return cls(
            issuers=issuers,
            audiences=tuple(str(a) for a in settings.get("audiences") or ()),
            leeway=int(settings.get("leeway_seconds", DEFAULT_LEEWAY_S)),
            jwks=jwks or JWKSCache(),
            use_visa_type=str((settings.get("data_use") or {}).get("visa_type") or DEFAULT_USE_VISA_TYPE),
        )

    def _signing_key(self, token: str, *, for_visa: bool) -> tuple[PyJWK, str, IssuerConfig]:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise TokenError("malformed token") from exc
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise TokenError(f"algorithm {str(alg)[:16]!r} is not accepted (only {', '.join(ALGORITHMS)})")
        issuer = self.issuers.get(str(unverified.get("iss", "")))
        if issuer is None or (issuer.visas_only and not for_visa):
            raise TokenError("the token's issuer is not trusted by this node")
        source = issuer.jwks_url or f"file://{issuer.jwks_file}"
        jku = header.get("jku")
        if jku is not None:
            if jku not in issuer.allowed_jku:
                raise TokenError("the token names a key set (jku) this node does not trust")
            source = jku
        kid = str(header.get("kid", ""))
        key = self.jwks.key(source, kid)
        if key is None:
            raise TokenError("the token is signed with an unknown key")
        if getattr(key, "key_type", None) != _KEY_TYPE_OF_ALG[alg]:
            raise TokenError("the token's algorithm does not match its key")
        return key, alg, issuer

    def _decode(self, token: str, *, for_visa: bool) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenError("token too large")
        key, alg, issuer = self._signing_key(token, for_visa=for_visa)
        options: jwt.types.Options = {"require": list(REQUIRED_CLAIMS), "verify_aud": not for_visa}
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=None if for_visa else list(self.audiences),
                issuer=issuer.issuer,
                leeway=self.leeway,
                options=options,
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("the token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise TokenError("the token is not valid yet") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenError("the token is not meant for this node (audience)") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"the token lacks the required claim {exc.claim}") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenError("the token's signature is invalid") from exc
        except jwt.PyJWTError as exc:
            raise TokenError("the token failed verification") from exc
        if not for_visa and not self.audiences:
            raise TokenError("this node accepts no tokens (no audiences configured)")
        now = time.time()
        if float(claims["iat"]) > now + self.leeway:
            raise TokenError("the token is not valid yet")
        return claims

    def verify(self, token: str) -> VerifiedToken:
        """Verify an access token or passport; raises TokenError. Visas that fail are dropped, not fatal."""
        claims = self._decode(token, for_visa=False)
        raw_visas = claims.get("ga4gh_passport_v1") or ()
        visas: list[Visa] = []
        ignored = 0
        if not isinstance(raw_visas, Sequence) or isinstance(raw_visas, str):
            raw_visas, ignored = (), 1
        conditioned: list[tuple[Visa, Any]] = []
        for raw in list(raw_visas)[:MAX_VISAS]:
            parsed = self._visa(raw)
            if parsed is None:
                ignored += 1
            elif parsed[0].conditions:
                conditioned.append(parsed)
            else:
                visas.append(parsed[0])
        # Conditions are met by unconditioned visas only: no visa can vouch for itself, no cycles.
        for visa, conditions in conditioned:
            uses = self._conditions_met(conditions, visas)
            if uses is None:
                ignored += 1
            else:
                visas.append(replace(visa, condition_uses=uses))
        return VerifiedToken(claims=claims, visas=tuple(visas), visas_ignored=ignored)

    def _conditions_met(self, conditions: Any, visas: list[Visa]) -> tuple[str, ...] | None:
        """The use values of the first met alternative of `conditions` (OR of ANDs), or None (logged)."""
        if not isinstance(conditions, list) or not all(isinstance(alt, list) and alt for alt in conditions):
            log.warning("a visa with malformed conditions is ignored")
            return None
        clauses = [clause for alt in conditions for clause in alt]
        not_understood = sorted({self._clause_problem(c) or "" for c in clauses} - {""})
        if not_understood:
            log.warning("a visa with conditions is not honoured: %s", "; ".join(not_understood))
            return None
        for alternative in conditions:
            matched = [self._matching_visa(clause, visas) for clause in alternative]
            found = [m for m in matched if m is not None]
            if len(found) == len(matched):
                return tuple(m.value for m in found)
        log.warning("a visa is not honoured: its conditions are not met by the passport's other visas")
        return None

    def _clause_problem(self, clause: Any) -> str | None:
        if not isinstance(clause, dict) or not isinstance(clause.get("type"), str):
            return "a condition clause is malformed"
        if clause["type"] != self.use_visa_type:
            return f"conditions on {clause['type'][:64]!r} visas are not supported"
        for name in ("value", "source", "by"):
            if name in clause and not (isinstance(clause[name], str) and clause[name].startswith("const:")):
                return f"only const: condition values are supported ({name})"
        if "value" not in clause:
            return "a condition clause without a value is not supported"
        return None

    @staticmethod
    def _matching_visa(clause: dict, visas: list[Visa]) -> Visa | None:
        for visa in visas:
            if visa.type == clause["type"] and all(
                name not in clause or clause[name][6:] == getattr(visa, name) for name in ("value", "source", "by")
            ):
                return visa
        return None

    def _visa(self, raw: Any) -> tuple[Visa, Any] | None:
        if not isinstance(raw, str):
            log.warning("a passport visa is not a JWT and is ignored")
            return None
        try:
            claims = self._decode(raw, for_visa=True)
        except TokenError as exc:
            log.warning("a passport visa is ignored: %s", exc.reason)
            return None
        body = claims.get("ga4gh_visa_v1")
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("type"), str)
            or not isinstance(body.get("value"), str)
        ):
            log.warning("a passport visa without a well-formed ga4gh_visa_v1 claim is ignored")
            return None
        visa = Visa(
            type=body["type"],
            value=body["value"],
            source=str(body.get("source", "")),
            by=body.get("by"),
            issuer=str(claims["iss"]),
            conditions=bool(body.get("conditions")),
        )
        return visa, body.get("conditions")
