"""Offline ontology look-ups for Beacon filters: HPO descendants and labels (the loader is gateway.ontology.hpo)."""

from gateway.ontology.hpo import has_hierarchy, hpo_descendants, hpo_known, hpo_label, warm  # noqa: F401
