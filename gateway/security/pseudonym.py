"""Keyed pseudonyms for patient identifiers: the one place that turns an identifier into an id.

HMAC-SHA256 with the node's secret key: stable for the same input on the same node,
unlinkable across nodes (different keys), and not reversible without the key. The
FHIR translator and the VCF sample linking both call `pseudonymise`, so a sample
named by a hospital identifier meets the individual created from that patient.

After `gateway keys rotate` the node key is a `ChainedKey`: the first key plus the keys
added since. Every id is then chained, new = HMAC(next key, old id) step by step, which is
exactly what the rotation applied to the stored ids, so later ingests meet earlier ones
and no raw identifier ever had to be kept.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from functools import partial

from translators.fhir.common import IdFunctions

PSEUDONYM_PREFIX = "pid-"  # marks ids as pseudonyms in outputs and logs


PSEUDONYM = re.compile(r"pid-[0-9a-f]{32}")
DERIVED = re.compile(r"([a-z][a-z_]{0,31})-([0-9a-f]{24})")


class ChainedKey(bytes):
    """The first node key (its bytes) and the rotation keys added since, oldest first."""

    chain: tuple[bytes, ...]

    def __new__(cls, first: bytes, chain: tuple[bytes, ...] = ()):
        obj = super().__new__(cls, first)
        obj.chain = tuple(chain)
        return obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, bytes) and bytes(self) == bytes(other) and self.chain == getattr(other, "chain", ())

    def __hash__(self) -> int:
        return hash((bytes(self), self.chain))


def chain_step(key: bytes, value: str) -> str:
    """One rotation step of a stored id (pseudonym or derived id), keeping its kind prefix."""
    if PSEUDONYM.fullmatch(value):
        return PSEUDONYM_PREFIX + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]
    match = DERIVED.fullmatch(value)
    if match:
        return f"{match.group(1)}-" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:24]
    raise ValueError("not a pseudonym or derived id")


def _chained(key: bytes, value: str) -> str:
    for later in getattr(key, "chain", ()):
        value = chain_step(later, value)
    return value


def pseudonymise(key: bytes, value: str, system: str | None = None) -> str:
    """The pseudonym of identifier `value` (in namespace `system`, when it has one)."""
    if not value:
        raise ValueError("cannot pseudonymise an empty identifier")
    message = f"{system}|{value}" if system else value
    digest = hmac.new(bytes(key), message.encode("utf-8"), hashlib.sha256).hexdigest()
    return _chained(key, PSEUDONYM_PREFIX + digest[:32])  # 128 bits: collision-free at any realistic scale


def derived_id(key: bytes, kind: str, *parts: str) -> str:
    """A pseudonymous id for a non-patient object (specimen, bundle entry …) of a pseudonymised subject."""
    message = "\x1f".join((kind, *parts))
    return _chained(key, f"{kind}-" + hmac.new(bytes(key), message.encode("utf-8"), hashlib.sha256).hexdigest()[:24])


def id_functions(key: bytes) -> IdFunctions:
    """The translators' id functions, keyed with the node key (translators never see the key)."""
    return IdFunctions(subject=partial(pseudonymise, key), derived=partial(derived_id, key))
