"""One HPO loader (gateway.ontology.hpo) for both its users: Beacon filters and phenopacket validation."""

from gateway.beacon import ontology as beacon_ontology
from gateway.ontology import hpo as shared
from gateway.validation import hpo as validation_hpo


def test_beacon_and_validation_share_one_loaded_hpo():
    assert validation_hpo.load_ontology is shared.load_ontology
    assert beacon_ontology.hpo_descendants is shared.hpo_descendants
    ontology = shared.load_ontology()
    assert validation_hpo.load_ontology() is ontology  # loaded once per process, whoever asks first


def test_descendants_agree_with_ancestors():
    ontology = shared.load_ontology()
    seizure = "HP:0001250"
    descendants = beacon_ontology.hpo_descendants(seizure)
    assert seizure in descendants and "HP:0002069" in descendants  # bilateral tonic-clonic seizure
    for term in sorted(descendants - {seizure})[:200]:
        assert seizure in ontology.ancestors(term), term
    assert beacon_ontology.hpo_label(seizure) == ontology.term(seizure).name == "Seizure"
    assert beacon_ontology.hpo_descendants("HP:9999999") == frozenset({"HP:9999999"})
    assert not beacon_ontology.hpo_known("HP:9999999") and beacon_ontology.hpo_known(seizure)
