"""The references from one resource to another that the translation follows (besides the patient's).

One table, read by both sides that must agree on it: the families resolve only references of these
kinds (`BundleSource.resolve` records each one it resolved, and tests/translators/test_fhir_links.py
fails when a translation of a real Bundle resolved a reference that `followed_references` does not
name), and the resource-by-resource merge groups resources into parts by them
(`followed_references`). A link added to a family without a row here fails that test instead of
silently breaking the merge. Any other link (specimen, encounter …) changes nothing in a phenopacket.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from mappings import load_profile, load_registry, profile_names
from translators.fhir.common import as_list, codings, reference_of

MEDICATION_TYPES = frozenset({"MedicationStatement", "MedicationRequest", "MedicationAdministration"})


@dataclass(frozen=True)
class Link:
    types: frozenset[str]  # the resource types that make it
    path: tuple[str, ...]  # element names down to the Reference(s) (lists walked)
    family: str  # who follows it, and why
    when: Callable[[dict], bool] | None = None  # followed only for resources of which this holds


@cache
def _tnm_prefixes() -> frozenset[str]:
    return frozenset(p for name in profile_names() for p in load_profile(name).tnm_finding_prefixes)


def _tnm_valued(resource: dict) -> bool:
    """A value coded in a TNM system (of any profile): only then is the focus a Disease's finding."""
    registry, prefixes = load_registry(), _tnm_prefixes()
    return any(
        isinstance(c, dict) and registry.prefix_for(c.get("system")) in prefixes
        for c in codings(resource.get("valueCodeableConcept"))
    )


LINKS: tuple[Link, ...] = (
    Link(MEDICATION_TYPES, ("medicationReference",), "actions.medication: the Medication's code"),
    Link(frozenset({"DiagnosticReport"}), ("result",), "assemble.report / citing_owner: the report's results"),
    Link(frozenset({"Condition"}), ("evidence", "detail"), "conditions / variants: the variants a Condition names"),
    Link(frozenset({"Observation"}), ("derivedFrom",), "variants.implication: the variants it is about"),
    Link(frozenset({"Observation"}), ("hasMember",), "variants.members, citing_owner: complex variants, panels"),
    Link(frozenset({"Observation"}), ("focus",), "conditions.tnm_finding: a Disease's clinicalTnmFinding", _tnm_valued),
)


def _walk(node: object, path: tuple[str, ...]) -> list:
    if not path:
        return [node]
    found = []
    for item in as_list(node) if isinstance(node, list) else [node]:
        if isinstance(item, dict) and path[0] in item:
            value = item[path[0]]
            for element in value if isinstance(value, list) else [value]:
                found += _walk(element, path[1:])
    return found


def followed_references(resource: dict) -> list[str]:
    """The references of `resource` that the translation follows: what makes resources one part."""
    rtype = resource.get("resourceType")
    found = []
    for link in LINKS:
        if rtype in link.types and (link.when is None or link.when(resource)):
            found += [r for item in _walk(resource, link.path) if (r := reference_of(item)) is not None]
    return found
