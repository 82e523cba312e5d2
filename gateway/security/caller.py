"""Who is asking: the caller's tier per dataset, and the address their query budget is kept under.

Tiers (ascending): PUBLIC (no token), REGISTERED (a verified token of a trusted issuer),
CONTROLLED (a ControlledAccessGrants visa whose value is one of the grant values the
dataset's configuration lists: its URL or id, or `policy.grants`). The operator (operator
token, or a verified token carrying a configured operator role) sees every dataset exactly.

Data use: where the passport names an intended use (a visa of the configured use type, or the
use a grant's `conditions` are bound to), the grant is honoured only when one of its uses is
permitted by the dataset's DUO terms (gateway.security.data_use). Without a named use, a
grant is honoured whatever the dataset's DUO terms.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from gateway.config import Config, DatasetConfig
from gateway.security.data_use import DEFAULT_USE_VISA_TYPE, parse_use, use_refusal

PUBLIC, REGISTERED, CONTROLLED = "PUBLIC", "REGISTERED", "CONTROLLED"
TIERS = (PUBLIC, REGISTERED, CONTROLLED)
TIER_RANK = {t: i for i, t in enumerate(TIERS)}
GRANT_VISA = "ControlledAccessGrants"


@dataclass(frozen=True)
class Caller:
    ip: str = "unknown"
    sub: str | None = None
    issuer: str | None = None
    grants: frozenset[str] = frozenset()  # values of the verified ControlledAccessGrants visas
    operator: bool = False
    visas_ignored: int = 0
    roles: frozenset[str] = field(default_factory=frozenset)
    # (grant value, the intended uses it is bound to); a grant absent here or with no uses: no use named
    grant_uses: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def anonymous(self) -> bool:
        return self.sub is None and not self.operator

    @property
    def budget_key(self) -> str:
        """Registered callers are budgeted by token subject, anonymous ones by address."""
        if self.operator:
            return "operator"
        return f"sub:{self.issuer}|{self.sub}" if self.sub else f"ip:{self.ip}"

    def tier_for(self, dataset: DatasetConfig, node_base_url: str = "") -> str:
        if self.operator:
            return CONTROLLED
        if self.sub is None:
            return PUBLIC
        honoured, _ = self.grant_decision(dataset, node_base_url)
        return CONTROLLED if honoured else REGISTERED

    def grant_decision(self, dataset: DatasetConfig, node_base_url: str = "") -> tuple[bool, str | None]:
        """Whether a grant of this caller opens `dataset`, and when one matches but is refused, why (data use)."""
        matching = self.grants & grant_values(dataset, node_base_url)
        if not matching:
            return False, None
        uses_of = dict(self.grant_uses)
        reasons: list[str] = []
        for value in sorted(matching):
            uses = uses_of.get(value, ())
            if not uses:
                return True, None
            for use in uses:
                reason = _refusal(tuple(dataset.data_use_conditions), use)
                if reason is None:
                    return True, None
                reasons.append(reason)
        return False, "; ".join(dict.fromkeys(reasons))

    @property
    def best_tier(self) -> str:
        return CONTROLLED if self.operator else PUBLIC if self.sub is None else REGISTERED


ANONYMOUS = Caller()


@lru_cache(maxsize=4096)
def _refusal(dataset_terms: tuple[str, ...], use_value: str) -> str | None:
    return use_refusal(dataset_terms, parse_use(use_value))


def grant_values(dataset: DatasetConfig, node_base_url: str = "") -> frozenset[str]:
    """The visa values that grant CONTROLLED access to `dataset`: declared grants, its id and its URL."""
    values = {dataset.id}
    if node_base_url:
        values.add(f"{node_base_url.rstrip('/')}/api/datasets/{dataset.id}")
    declared = dataset.policy.get("grants") or ()
    values.update(str(v) for v in ([declared] if isinstance(declared, str) else declared))
    return frozenset(values)


def parse_networks(values: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(str(v), strict=False) for v in values)


def _in(address: str, networks: Sequence) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_ip(remote_addr: str | None, forwarded_for: str | None, trusted: Sequence) -> str:
    """The caller's address: `X-Forwarded-For` is read only when the connection comes from a trusted
    proxy or network node, walking the chain from the right past trusted hops, so no client can forge it."""
    address = (remote_addr or "unknown").strip()
    if not forwarded_for or not _in(address, trusted):
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return address  # a malformed chain: trust only the proxy we know
        if not _in(hop, trusted):
            return hop
        address = hop
    return address


def caller_from_token(
    verified: Any, ip: str, operator_roles: Iterable[str] = (), use_visa_type: str = DEFAULT_USE_VISA_TYPE
) -> Caller:
    """A Caller from a VerifiedToken: grants from its visas (each bound to the uses its conditions name, else
    to the passport's unconditioned use visas), operator from a configured role."""
    grant_visas = [v for v in verified.visas if v.type == GRANT_VISA]
    grants = frozenset(v.value for v in grant_visas)
    passport_uses = tuple(
        dict.fromkeys(v.value for v in verified.visas if v.type == use_visa_type and not v.conditions)
    )
    bound: dict[str, list[str]] = {}
    unrestricted: set[str] = set()
    for visa in grant_visas:
        uses = visa.condition_uses if visa.conditions else passport_uses
        if not uses:
            unrestricted.add(visa.value)  # a grant with no use named is honoured whatever the DUO terms
        bound.setdefault(visa.value, []).extend(uses)
    roles = frozenset(_roles(verified.claims))
    is_operator = bool(roles & set(operator_roles))
    return Caller(
        ip=ip,
        sub=verified.sub,
        issuer=verified.issuer,
        grants=grants,
        operator=is_operator,
        visas_ignored=verified.visas_ignored,
        roles=roles,
        grant_uses=tuple(
            (value, () if value in unrestricted else tuple(dict.fromkeys(uses)))
            for value, uses in sorted(bound.items())
        ),
    )


def _roles(claims: Mapping[str, Any]) -> list[str]:
    """Roles as OIDC providers commonly carry them: `roles`, `groups`, or Keycloak's `realm_access.roles`."""
    out: list[str] = []
    for value in (claims.get("roles"), claims.get("groups"), (claims.get("realm_access") or {}).get("roles")):
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            out.extend(str(v) for v in value if isinstance(v, str | int))
    return out


def dataset_config(config: Config, dataset_id: str) -> DatasetConfig:
    """A dataset's configuration; one the operator did not declare gets the safe default (CONTROLLED)."""
    dataset = config.dataset(dataset_id) or DatasetConfig(id=dataset_id)
    if not dataset.data_use_conditions:  # the terms /datasets shows for it are the ones checked
        default = config.default_data_use_conditions
        if default:
            dataset = replace(dataset, data_use_conditions=default)
    return dataset
