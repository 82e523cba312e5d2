"""VCF validation without storing anything: the same checks the ingest makes (gateway.variants.reader)."""

from __future__ import annotations

from pathlib import Path

from gateway.issues import Report
from gateway.variants.ingest import validate_file


def validate_vcf(path: str | Path, *, assembly: str | None = None) -> Report:
    """Header and every record checked, with file:line locations; htslib runs in a child process."""
    return validate_file(path, assembly=assembly)
