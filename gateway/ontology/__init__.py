"""Ontologies read offline, for every room that needs them (Beacon filters, phenopacket validation)."""
