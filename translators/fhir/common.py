"""Small helpers over parsed FHIR JSON, and the id functions the caller passes in.

The translator never holds a key: it names what needs an id and the caller's functions make it
(the gateway passes keyed pseudonyms from gateway/security/pseudonym.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Protocol

HOMO_SAPIENS = {"id": "NCBITaxon:9606", "label": "Homo sapiens"}


class SubjectIdFunction(Protocol):
    """The pseudonym of a person identifier `value` (in namespace `system`, when it has one)."""

    def __call__(self, value: str, system: str | None = None, /) -> str: ...


class DerivedIdFunction(Protocol):
    """A stable pseudonymous id for an object of a subject (kind, then the parts that name it)."""

    def __call__(self, kind: str, /, *parts: str) -> str: ...


@dataclass(frozen=True)
class IdFunctions:
    """How the translator names people and things: both functions must be deterministic."""

    subject: SubjectIdFunction
    derived: DerivedIdFunction


def codings(concept: object) -> list:
    if not isinstance(concept, dict):
        return []
    found = concept.get("coding")
    return found if isinstance(found, list) else []


def as_list(value: object) -> list:
    return value if isinstance(value, list) else []


def first_code(concept: object, system: str) -> str | None:
    for coding in codings(concept):
        if isinstance(coding, dict) and coding.get("system") == system and isinstance(coding.get("code"), str):
            return coding["code"]
    return None


def reference_of(value: object) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        return value["reference"]
    return None


@lru_cache(maxsize=256)
def rfc3339(now: datetime) -> str:
    # cached: every part of a patient is stamped with the one `now` of its write, and strftime is slow
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def value_key(holder: dict) -> str | None:
    """The name of the value[x] element of an Observation or component, if any."""
    for name in holder:
        if name.startswith("value") and name != "valueSet":
            return name
    return None
