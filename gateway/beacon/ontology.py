"""Offline ontology look-ups for Beacon filters: HPO descendants and labels (the loader is gateway.ontology.hpo)."""

from gateway.ontology.hpo import (  # noqa: F401
    has_hierarchy,
    hpo_ancestors,
    hpo_descendants,
    hpo_known,
    hpo_label,
    warm,
)
