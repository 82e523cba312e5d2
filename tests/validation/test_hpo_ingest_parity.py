"""`gateway validate` and ingest judge a phenopacket's HPO terms by one rule (gateway.validation.hpo, the bundled
HPO): what the validator refuses, ingest refuses, with the same codes at the same places; what it accepts, ingest
accepts. Run on every real phenopacket of ../shared/reference (phenopacket-store, and phenopacket-tools' `pxf
validate` fixtures). Before: ingest read no ontology, so a phenopacket with an observed term beside its observed
ancestor (phenopacket-tools' annotation-propagation-rule fixture) was stored while `gateway validate` exited 1 on
it."""

from __future__ import annotations

import json

from gateway.cli import main
from gateway.services.ingest import ingest_phenopackets
from gateway.validation.engine import Options, validate_path
from gateway.validation.phenopacket import detect_kind
from tests.conftest import TEST_KEY_HEX

HPO_CODES = {"unknown-hpo-term", "obsolete-term", "annotation-propagation-rule"}


def _phenopackets(reference_dir):
    folder = reference_dir / "phenopackets"
    found = sorted(folder.glob("*/PMID_*.json")) + sorted((folder / "_phenopacket-tools").rglob("*.json"))
    for path in found:
        doc = json.loads(path.read_text())
        if isinstance(doc, dict) and detect_kind(doc) == "phenopacket":
            yield path, doc


def _hpo(issues) -> set[tuple[str, str, str]]:
    return {(i.severity.value, i.code, i.location) for i in issues if i.code in HPO_CODES}


def test_validate_and_ingest_agree_on_every_real_phenopacket(reference_dir):
    disagreements, seen, refused = [], 0, []
    for path, doc in _phenopackets(reference_dir):
        validated = validate_path(str(path), Options())
        _, (ingested,) = ingest_phenopackets([doc], store=None, key=bytes.fromhex(TEST_KEY_HEX), dataset_id="d")
        seen += 1
        if validated.valid != ingested.ok or _hpo(validated.report) != _hpo(ingested):
            disagreements.append((path.name, validated.valid, ingested.ok, _hpo(validated.report), _hpo(ingested)))
        if not ingested.ok:
            refused.append(path.name)
    assert seen > 300
    assert disagreements == []
    assert "marfan.annotation-propagation-rule.json" in refused  # the rule is applied, not skipped by both


def _changed_marfan(reference_dir, tmp_path, features):
    """A real phenopacket-tools document changed in one place: (its path, the document)."""
    folder = reference_dir / "phenopackets" / "_phenopacket-tools" / "validate" / "phenotype-validation"
    doc = json.loads((folder / "marfan.json").read_text())
    doc["phenotypicFeatures"] = features
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(doc))
    return path, doc


def test_ingest_refuses_what_validate_refuses(reference_dir, tmp_path):
    features = [
        {"type": {"id": "HP:0001166", "label": "Arachnodactyly"}},
        {"type": {"id": "HP:0001238", "label": "Slender finger"}, "excluded": True},
    ]
    path, doc = _changed_marfan(reference_dir, tmp_path, features)
    validated = validate_path(str(path), Options())
    _, (ingested,) = ingest_phenopackets([doc], store=None, key=bytes.fromhex(TEST_KEY_HEX), dataset_id="d")
    assert not validated.valid and not ingested.ok
    assert "annotation-propagation-rule" in {i.code for i in ingested.errors}
    assert _hpo(validated.report) == _hpo(ingested)


def test_a_term_the_bundled_hpo_does_not_know_is_a_warning_on_both(reference_dir, tmp_path):
    """The bundled HPO is a release (hpo3's); a phenopacket written since may use a term added after it. Refusing
    it would cost a node a valid document, so both say it and keep it; `--strict` (and an HPO given with `--hpo`,
    test_validate_cli) make it fail."""
    features = [{"type": {"id": "HP:9999999", "label": "a term added after the bundled release"}}]
    path, doc = _changed_marfan(reference_dir, tmp_path, features)
    validated = validate_path(str(path), Options())
    _, (ingested,) = ingest_phenopackets([doc], store=None, key=bytes.fromhex(TEST_KEY_HEX), dataset_id="d")
    assert validated.valid and ingested.ok
    assert (
        _hpo(validated.report) == _hpo(ingested) == {("warning", "unknown-hpo-term", "/phenotypicFeatures/0/type/id")}
    )
    assert main(["validate", "--strict", str(path)]) == 1  # a conformance run fails on it
