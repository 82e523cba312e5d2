"""Genomic interoperability gateway: FHIR R4 and VCF in, GA4GH Phenopackets v2 and Beacon v2 out."""

__version__ = "0.1.0"
