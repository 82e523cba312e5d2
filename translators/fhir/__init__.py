"""FHIR R4 -> Phenopacket v2, one module per FHIR element family.

- `common`      small helpers over FHIR JSON, the id functions a caller passes in
- `references`  the Bundle: accepted types and reference resolution (also used by gateway/validation)
- `context`     what every family of one patient shares: issues, terms, ages, ids
- `patient`     Patient -> subject (pseudonym, sex, ages, vital status)
- `phenotypes`  HPO Observations / components -> phenotypicFeatures
- `conditions`  Condition -> diseases (or phenotypes), with the variants named as evidence
- `variants`    Genomics Reporting variants and diagnostic implications -> interpretations
- `specimens`   Specimen -> biosamples
- `actions`     Procedure / MedicationStatement -> medicalActions
- `assemble`    walks the Bundle, gives each entry to its patient and family, builds the phenopacket

The public entry point stays `translators.fhir_to_phenopacket.translate_bundle`.
"""
