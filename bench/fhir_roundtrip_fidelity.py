"""Fidelity (not a test, not a timing): facts kept per class when phenopackets go to FHIR and come back.

1. phenopacket -> FHIR -> phenopacket on the 300 real phenopackets (../shared/reference/phenopackets),
   once per profile (generic HL7, MII), plus the phenopacket-tools retinoblastoma example (the only
   reference file with biosamples, treatments and procedures).
2. FHIR -> phenopacket -> FHIR -> phenopacket on the real bundles of the forward golden tests.
A fact is what translators/phenopacket_facts.py says a phenopacket states (sex, each phenotype with its
excluded flag, each disease, each variant and its gene / zygosity / ACMG class, each diagnosis link,
each biosample, measurement, treatment and procedure). "in FHIR" counts the measurements found in the
Bundle itself, since the forward direction does not read measurements back.

Run: python bench/fhir_roundtrip_fidelity.py   (prints Markdown tables for the README)
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = (REPO / ".." / "shared" / "reference").resolve()
sys.path.insert(0, str(REPO))

KEY = b"fidelity-bench-key-not-a-secret!"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def forward(bundle: dict, profile: str) -> list[dict]:
    from gateway.security.pseudonym import id_functions
    from mappings import load_profile
    from translators.fhir_to_phenopacket import translate_bundle

    result = translate_bundle(bundle, profile=load_profile(profile), ids=id_functions(KEY), now=NOW)
    return [p.phenopacket for p in result.packets]


def measurements_in_fhir(bundle: dict, packet: dict) -> int:
    found = 0
    for measurement in packet.get("measurements", []):
        code = measurement.get("assay", {}).get("id", ":").split(":", 1)[1]
        value = measurement.get("value", {}).get("quantity", {}).get("value")
        found += any(
            e["resource"]["resourceType"] == "Observation"
            and any(c.get("code") == code for c in e["resource"].get("code", {}).get("coding", []))
            and e["resource"].get("valueQuantity", {}).get("value") == value
            for e in bundle.get("entry", [])
        )
    return found


def phenopacket_round_trip(profile: str, files: list[Path]) -> tuple[dict, dict, int, int, int]:
    from gateway.validation.fhir import validate_fhir
    from translators.phenopacket_facts import FACT_CLASSES, facts
    from translators.phenopacket_to_fhir import translate_phenopacket

    total = dict.fromkeys(FACT_CLASSES, 0)
    kept = dict.fromkeys(FACT_CLASSES, 0)
    warnings = invalid = in_fhir = 0
    for path in files:
        packet = json.loads(path.read_text(encoding="utf-8"))
        bundle, issues = translate_phenopacket(packet, profile=profile)
        warnings += sum(i.severity.value == "warning" for i in issues)
        invalid += not validate_fhir(bundle).ok
        in_fhir += measurements_in_fhir(bundle, packet)
        (again,) = forward(bundle, profile)
        before, after = facts(packet), facts(again)
        for name in FACT_CLASSES:
            total[name] += len(before[name])
            kept[name] += len(before[name] & after[name])
    return total, kept, warnings, invalid, in_fhir


def fhir_round_trip() -> tuple[dict, dict, int]:
    from tests.translators.test_golden import CASES, build_input
    from translators.phenopacket_facts import FACT_CLASSES, facts
    from translators.phenopacket_to_fhir import translate_phenopacket

    total = dict.fromkeys((*FACT_CLASSES, TNM), 0)
    kept = dict.fromkeys((*FACT_CLASSES, TNM), 0)
    packets = 0
    for profile, files in [*CASES.values(), *EXTRA_BUNDLES]:
        for packet in forward(build_input(files), profile):
            packets += 1
            bundle, _ = translate_phenopacket(packet, profile=profile)
            (again,) = forward(bundle, profile)
            before, after = {**facts(packet), TNM: tnm_findings(packet)}, {**facts(again), TNM: tnm_findings(again)}
            for name in total:
                total[name] += len(before[name])
                kept[name] += len(before[name] & after[name])
    return total, kept, packets


# Beyond the golden cases: a real Bundle with TNM categories (Observations focused on the Condition).
EXTRA_BUNDLES = [("mii", ["mii-testdata/Bundle-mii-exa-test-data-bundle-onkologie-1.json"])]
TNM = "TNM findings"


def tnm_findings(packet: dict) -> set[tuple]:
    """(disease term, TNM category) pairs: Disease.clinicalTnmFinding (not a class of phenopacket_facts)."""
    return {
        (disease.get("term", {}).get("id"), finding.get("id"))
        for disease in packet.get("diseases", [])
        for finding in disease.get("clinicalTnmFinding", [])
    }


def cell(kept: int, total: int | None) -> str:
    return "-" if not total else f"{kept}/{total} ({100 * kept / total:.1f} %)"


def main() -> None:
    from translators.phenopacket_facts import FACT_CLASSES

    real = sorted(p for p in (REFERENCE / "phenopackets").glob("*/*.json") if not p.parent.name.startswith("_"))
    rich = [REFERENCE / "phenopackets" / "_phenopacket-tools" / "phenopackets" / "retinoblastoma.json"]
    columns = []
    for profile in ("generic", "mii"):
        total, kept, warnings, invalid, in_fhir = phenopacket_round_trip(profile, real)
        columns.append((f"300 real, {profile}", total, kept))
        print(
            f"# 300 real phenopackets as {profile}: {warnings} warnings, {invalid} invalid Bundles,"
            f" measurements in the Bundle {in_fhir}/{total['measurements']}"
        )
    total, kept, warnings, invalid, in_fhir = phenopacket_round_trip("generic", rich)
    columns.append(("retinoblastoma, generic", total, kept))
    print(f"# retinoblastoma: {warnings} warnings, {invalid} invalid, measurements in the Bundle {in_fhir}")
    total, kept, packets = fhir_round_trip()
    columns.append((f"FHIR→PP→FHIR→PP, {packets} golden + onkologie", total, kept))
    print()
    print("| facts kept | " + " | ".join(name for name, _, _ in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for fact_class in (*FACT_CLASSES, TNM):
        print(
            f"| {fact_class} | "
            + " | ".join(cell(k.get(fact_class, 0), t.get(fact_class)) for _, t, k in columns)
            + " |"
        )


if __name__ == "__main__":
    main()
