"""Who is asking: the caller's tier per dataset, and the address their query budget is kept under.

Tiers (ascending): PUBLIC (no token), REGISTERED (a verified token of a trusted issuer),
CONTROLLED (a ControlledAccessGrants visa whose value is one of the grant values the
dataset's configuration lists: its URL or id, or `policy.grants`). The operator (operator
token, or a verified token carrying a configured operator role) sees every dataset exactly.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.config import Config, DatasetConfig

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
        if self.grants & grant_values(dataset, node_base_url):
            return CONTROLLED
        return REGISTERED

    @property
    def best_tier(self) -> str:
        return CONTROLLED if self.operator else PUBLIC if self.sub is None else REGISTERED


ANONYMOUS = Caller()


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


def caller_from_token(verified: Any, ip: str, operator_roles: Iterable[str] = ()) -> Caller:
    """A Caller from a VerifiedToken: grants from its visas, operator from a configured role."""
    grants = frozenset(v.value for v in verified.visas if v.type == GRANT_VISA)
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
    return config.dataset(dataset_id) or DatasetConfig(id=dataset_id)
