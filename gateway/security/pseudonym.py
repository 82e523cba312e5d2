"""Keyed pseudonyms for patient identifiers: the one place that turns an identifier into an id.

HMAC-SHA256 with the node's secret key: stable for the same input on the same node,
unlinkable across nodes (different keys), and not reversible without the key. The
FHIR translator and the VCF sample linking both call `pseudonymise`, so a sample
named by a hospital identifier meets the individual created from that patient.
"""

from __future__ import annotations

import hashlib
import hmac

PSEUDONYM_PREFIX = "pid-"  # marks ids as pseudonyms in outputs and logs


def pseudonymise(key: bytes, value: str, system: str | None = None) -> str:
    """The pseudonym of identifier `value` (in namespace `system`, when it has one)."""
    if not value:
        raise ValueError("cannot pseudonymise an empty identifier")
    message = f"{system}|{value}" if system else value
    digest = hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:32]  # 128 bits: collision-free at any realistic scale


def derived_id(key: bytes, kind: str, *parts: str) -> str:
    """A pseudonymous id for a non-patient object (specimen, bundle entry …) of a pseudonymised subject."""
    message = "\x1f".join((kind, *parts))
    return f"{kind}-" + hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()[:24]
