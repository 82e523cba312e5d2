"""The node's security services, built once per application: tokens, budget, audit, dataset sizes.

Configuration (`security:` at the top level of the YAML file, all optional):

    security:
      issuers:                       # trusted token issuers (an empty list: no token is accepted)
        - issuer: https://login.example.org/
          jwks_url: https://login.example.org/jwks      # or jwks_file: /etc/gateway/jwks.json
          allowed_jku: []                                # key-set URLs a token may name
          visas_only: false                              # true: trusted to sign visas only
      audiences: [https://node.example.org, https://network.example.org]
      leeway_seconds: 30
      operator_roles: [gateway-operator]                # roles (roles / groups / realm_access.roles)
      trusted_proxies: [127.0.0.1/32]                    # X-Forwarded-For is read only from these
      redis_url: redis://127.0.0.1:6379/0               # query budget shared by workers; else in-process
      budget: {window_seconds: 3600, anonymous: 300, registered: 3000, controlled: null}
      cors_origins: []                                   # origins allowed on the public endpoints only
      data_use: {visa_type: ResearchPurpose}            # the visa type that names an intended use (DUO CURIEs)
      audit: true
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.config import Config, ConfigError
from gateway.security.audit import AuditLog
from gateway.security.budget import QueryBudget
from gateway.security.caller import Caller, caller_from_token, client_ip, parse_networks
from gateway.security.keys import is_operator
from gateway.security.policy import check_policies
from gateway.security.tokens import TokenError, TokenVerifier
from gateway.store.metadata import MetadataStore
from gateway.variants.protocol import VariantReader

SIZE_CACHE_S = 10.0


def settings_of(config: Config) -> Mapping[str, Any]:
    return config.security


@dataclass
class Security:
    config: Config
    key: bytes
    operator_tokens: tuple[str, ...]
    verifier: TokenVerifier
    budget: QueryBudget
    audit: AuditLog | None
    trusted_networks: tuple = ()
    operator_roles: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    _sizes: dict[str, tuple[float, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_config(
        cls, config: Config, key: bytes, operator_tokens: tuple[str, ...] = (), *, audit: bool | None = None
    ) -> Security:
        settings = settings_of(config)
        check_policies(config)
        try:
            verifier = TokenVerifier.from_settings(settings)
            trusted = parse_networks(settings.get("trusted_proxies") or ())
            budget = QueryBudget.from_settings(settings)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"security: {exc}") from exc
        keep_audit = settings.get("audit", True) if audit is None else audit
        return cls(
            config=config,
            key=key,
            operator_tokens=operator_tokens,
            verifier=verifier,
            budget=budget,
            audit=AuditLog(config.data_dir) if keep_audit else None,
            trusted_networks=trusted,
            operator_roles=tuple(str(r) for r in settings.get("operator_roles") or ()),
            cors_origins=tuple(str(o) for o in settings.get("cors_origins") or ()),
        )

    def authenticate(self, authorization: str | None, remote_addr: str | None, forwarded_for: str | None) -> Caller:
        """The caller of a request. No credential: anonymous. A credential that fails: TokenError (→ 401)."""
        ip = client_ip(remote_addr, forwarded_for, self.trusted_networks)
        if not authorization:
            return Caller(ip=ip)
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise TokenError("the Authorization header must be 'Bearer <token>'")
        if is_operator(self.operator_tokens, token):
            return Caller(ip=ip, operator=True, sub="operator", issuer="local")
        return caller_from_token(self.verifier.verify(token), ip, self.operator_roles, self.verifier.use_visa_type)

    def dataset_size(self, store: MetadataStore | None, variants: VariantReader | None, dataset_id: str) -> int:
        """Individuals in a dataset: the larger of its phenopackets and its VCF samples (cached briefly)."""
        now = time.monotonic()
        with self._lock:
            cached = self._sizes.get(dataset_id)
            if cached and now - cached[0] < SIZE_CACHE_S:
                return cached[1]
        samples = variants.sample_count(dataset_id) if variants is not None else 0
        size = max(_phenopacket_count(store, dataset_id), samples)
        with self._lock:
            self._sizes[dataset_id] = (now, size)
        return size

    def forget_sizes(self) -> None:
        with self._lock:
            self._sizes.clear()


def _phenopacket_count(store: MetadataStore | None, dataset_id: str) -> int:
    if store is None:
        return 0
    for row in store.list_datasets():
        if row["id"] == dataset_id:
            return int(row.get("phenopackets") or 0)
    return 0
