"""Offline HPO checks of phenopackets: the phenotype rules of `pxf validate`, with JSON-pointer locations.

The ontology is the HPO bundled with `hpo3` (no network), or an obographs JSON file (`--hpo hp.json`, as pxf
takes), loaded by gateway.ontology.hpo. Rules, per phenopacket (and per member of a Family or Cohort):

- unknown-hpo-term: an `HP:` id that the ontology does not know — an error against an ontology the caller gave
  (`--hpo`), a warning against the bundled release, which a real, valid file may postdate (as obsolete-term);
- obsolete-term (warning): an obsolete or alternative id, with its current primary id. A warning, not an error: a
  real, valid file may predate the bundled HPO release, and the term it uses was valid when it was written;
- annotation-propagation-rule (error): a term together with an observed ancestor (the ancestor is implied), an
  excluded term together with an excluded descendant (the descendant is implied), or an observed term below an
  excluded ancestor (a contradiction);
- missing-organ-system (error, only when asked with `organ_systems`): no observed or excluded feature at or below
  each requested organ-system term.

Duplicate and conflicting features are reported by the structural validator (gateway.validation.phenopacket).

`hpo_findings` is the one rule `gateway validate` and ingest (POST /phenopackets, `gateway ingest phenopacket`)
both apply to a submitted document: what one refuses, the other refuses (before, ingest read no ontology and
stored what the validator refused).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.issues import Issue

# The loader and the Ontology interface live in gateway.ontology.hpo (shared with the Beacon filters).
from gateway.ontology.hpo import HPO_PREFIX, Hpo3Ontology, OboGraphOntology, Ontology, Term, load_ontology  # noqa: F401
from schemas import pointer

if TYPE_CHECKING:  # imported where used: proto_spelling reads the phenopacket validator's kinds
    from gateway.validation.proto_spelling import Respelled

# --- the checks --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Feature:
    index: int
    id: str
    excluded: bool


def _features(packet: dict) -> list[_Feature]:
    out = []
    features = packet.get("phenotypicFeatures")
    for i, feature in enumerate(features if isinstance(features, list) else []):
        term = feature.get("type") if isinstance(feature, dict) else None
        term_id = term.get("id") if isinstance(term, dict) else None
        if isinstance(term_id, str) and term_id.startswith(HPO_PREFIX):
            out.append(_Feature(i, term_id, bool(feature.get("excluded", False))))
    return out


def hpo_issues(
    packet: dict,
    ontology: Ontology,
    *,
    organ_systems: Iterable[str] = (),
    path: tuple = (),
    target: str = "input",
) -> list[Issue]:
    """The HPO findings about one phenopacket (a dict); `path` locates it inside a Family or Cohort."""
    if not isinstance(packet, dict):
        return []
    issues: list[Issue] = []
    packet_id = packet.get("id") if isinstance(packet.get("id"), str) else "the phenopacket"

    def where(feature: _Feature) -> str:
        return pointer((*path, "phenotypicFeatures", feature.index, "type", "id"))

    current: list[_Feature] = []  # features with a usable, current term (after replacing obsolete ids)
    for feature in _features(packet):
        term = ontology.term(feature.id)
        if term is None:
            if ontology.authoritative:
                message = f"{feature.id} is not a term of {ontology.version}"
                issues.append(Issue.error("unknown-hpo-term", message, where(feature), target))
            else:  # the bundled release: the document may be newer than it (a term added since) — or mistyped
                message = (
                    f"{feature.id} is not a term of {ontology.version}, this node's HPO: a term added since, or no HPO "
                    "term; kept as sent (filters on its ancestors do not reach it). Check it against a current HPO "
                    "(gateway validate --hpo hp.json)"
                )
                issues.append(Issue.warning("unknown-hpo-term", message, where(feature), target))
            continue
        if term.obsolete:
            replacement = f" instead of current primary id ({term.replaced_by})" if term.replaced_by else ""
            issues.append(
                Issue.warning("obsolete-term", f"Using obsolete id ({feature.id}){replacement}", where(feature), target)
            )
            if not term.replaced_by or ontology.term(term.replaced_by) is None:
                continue
            feature = _Feature(feature.index, term.replaced_by, feature.excluded)
        current.append(feature)

    observed = {f.id: f for f in current if not f.excluded}
    excluded = {f.id: f for f in current if f.excluded}
    for feature in current:
        ancestors = ontology.ancestors(feature.id)
        for ancestor_id in sorted(ancestors):
            if not feature.excluded and ancestor_id in observed:
                message = (
                    f"Phenotypic features of {packet_id} must not contain both an observed term ({feature.id}) "
                    f"and an observed ancestor ({ancestor_id})"
                )
            elif feature.excluded and ancestor_id in excluded:
                message = (
                    f"Phenotypic features of {packet_id} must not contain both an excluded term ({ancestor_id}) "
                    f"and an excluded descendant ({feature.id})"
                )
            elif not feature.excluded and ancestor_id in excluded:
                message = (
                    f"Phenotypic features of {packet_id} must not contain both an observed term ({feature.id}) "
                    f"and an excluded ancestor ({ancestor_id})"
                )
            else:
                continue
            issues.append(Issue.error("annotation-propagation-rule", message, where(feature), target))

    annotated = [{f.id} | ontology.ancestors(f.id) for f in current]
    for system in organ_systems:
        if not any(system in closure for closure in annotated):
            term = ontology.term(system)
            label = f"{term.name} [{system}]" if term else system
            issues.append(
                Issue.error(
                    "missing-organ-system",
                    f"Missing annotation for {label}",
                    pointer((*path, "phenotypicFeatures")),
                    target,
                )
            )
    return issues


def hpo_findings(
    doc: Any,
    kind: str,
    *,
    ontology: Ontology | None = None,
    organ_systems: Iterable[str] = (),
    target: str = "input",
    respelled: Respelled | None = None,
) -> list[Issue]:
    """The HPO findings about a submitted Phenopacket, Family or Cohort as sent: judged in protobuf's canonical
    JSON spelling (proto field names and enum numbers read), located in the document as sent. `ontology`: the
    bundled HPO unless given; `respelled`: `doc` in that spelling, when the caller made it already."""
    from gateway.validation.phenopacket import KINDS
    from gateway.validation.proto_spelling import respell
    from gateway.yamlio import plain_numbers

    if not isinstance(doc, dict):
        return []
    respelled = respelled or respell(doc, KINDS[kind][0].DESCRIPTOR)
    canonical = plain_numbers(respelled.document)  # what is stored
    found = document_hpo_issues(
        canonical, kind, ontology or load_ontology(), organ_systems=organ_systems, target=target
    )
    return [Issue(i.severity, i.code, i.message, respelled.original_pointer(i.location), i.target) for i in found]


def document_hpo_issues(
    doc: dict, kind: str, ontology: Ontology, *, organ_systems: Iterable[str] = (), target: str = "input"
) -> list[Issue]:
    """HPO findings for a phenopacket, or for every member of a Family (proband, relatives) or a Cohort."""
    systems = tuple(organ_systems)
    if not isinstance(doc, dict):
        return []
    if kind == "phenopacket":
        return hpo_issues(doc, ontology, organ_systems=systems, target=target)
    members: list[tuple[tuple, object]] = []
    if kind == "family":
        members.append((("proband",), doc.get("proband")))
        relatives = doc.get("relatives")
        members += [(("relatives", i), r) for i, r in enumerate(relatives if isinstance(relatives, list) else [])]
    else:
        cohort = doc.get("members")
        members += [(("members", i), m) for i, m in enumerate(cohort if isinstance(cohort, list) else [])]
    issues: list[Issue] = []
    for path, packet in members:
        if isinstance(packet, dict):
            issues += hpo_issues(packet, ontology, organ_systems=systems, path=path, target=target)
    return issues
