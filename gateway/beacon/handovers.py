"""Beacon v2 handovers: typed links from an answer to the data behind it, behind the same authorisation.

- individuals (record granularity): each result set lists, as `resultsHandovers`, the phenopacket of every
  individual on the page (`/phenopackets/{id}`), when the caller may read that dataset's phenopackets, and
  for an individual with a stored family history its Phenopacket Family (`/phenopackets/{id}/family`):
  relatives are disclosed to no one who may not read the proband's record, and never as Beacon records;
- datasets (record granularity): `beaconHandovers` names the VCF export of each listed dataset holding
  variants (`/datasets/{id}/variants.vcf`), when the caller may read that dataset's variants.

"May read" is one rule used by the handover and by the endpoint it names (`may_read`): an operator, or a
caller CONTROLLED for the dataset whose policy serves records of that entry type to CONTROLLED callers.
PUBLIC and REGISTERED callers never get a handover, so boolean/count answers carry none either.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gateway.beacon.response import EntryAnswer
from gateway.config import Config
from gateway.security.caller import CONTROLLED, Caller, dataset_config
from gateway.security.policy import policy_for

PHENOPACKET = {"id": "CUSTOM:phenopacket-v2", "label": "GA4GH Phenopacket v2 (JSON)"}
FAMILY = {"id": "CUSTOM:phenopacket-family-v2", "label": "GA4GH Phenopacket v2 Family (JSON)"}
VCF = {"id": "EDAM:format_3016", "label": "VCF"}


def may_read(config: Config, caller: Caller, dataset_id: str, entry_path: str) -> bool:
    """Whether `caller` may read the individual-level data (`entry_path` records) of `dataset_id`."""
    if caller.operator:
        return True
    tier = caller.tier_for(dataset_config(config, dataset_id), config.node.base_url)
    return tier == CONTROLLED and policy_for(config, dataset_id).ceiling(CONTROLLED, entry_path) == "record"


def _base(ctx: Any) -> str:
    return (ctx.config.node.base_url or ctx.public_base_url or "").rstrip("/")


def add_handovers(ctx: Any, entry_path: str, granularity: str, answer: EntryAnswer) -> EntryAnswer:
    if granularity != "record":
        return answer
    caller: Caller = ctx.caller
    if entry_path == "individuals":
        sets = [
            replace(rs, handovers=tuple(_phenopackets(ctx, rs.records or ())))
            if rs.records and may_read(ctx.config, caller, rs.id, "individuals")
            else rs
            for rs in answer.result_sets
        ]
        return replace(answer, result_sets=sets)
    if entry_path == "datasets":
        records = [r for rs in answer.result_sets for r in rs.records or ()]
        links = [
            {
                "handoverType": dict(VCF),
                "url": f"{_base(ctx)}/datasets/{r['id']}/variants.vcf",
                "note": f"the variants of dataset {r['id']} as VCF (sites with allele counts; no genotypes)",
            }
            for r in records
            if (r.get("info") or {}).get("genomicVariants") and may_read(ctx.config, caller, r["id"], "g_variants")
        ]
        return replace(answer, handovers=tuple(links)) if links else answer
    return answer


def _phenopackets(ctx: Any, records) -> list[dict]:
    out = []
    named = [(record, (record.get("info") or {}).get("phenopacketId")) for record in records]
    named = [(record, packet) for record, packet in named if isinstance(packet, str) and packet]
    with_family = ctx.store.with_family([p for _, p in named]) if ctx.store is not None and named else set()
    for record, packet in named:
        out.append(
            {
                "handoverType": dict(PHENOPACKET),
                "url": f"{_base(ctx)}/phenopackets/{packet}",
                "note": f"the phenopacket of individual {record.get('id')}",
            }
        )
        if packet in with_family:
            out.append(
                {
                    "handoverType": dict(FAMILY),
                    "url": f"{_base(ctx)}/phenopackets/{packet}/family",
                    "note": f"the family (relatives, pedigree) of individual {record.get('id')}",
                }
            )
    return out
