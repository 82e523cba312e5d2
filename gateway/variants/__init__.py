"""The genomic half: VCF ingest into an indexed per-dataset variant store, and queries over it."""
