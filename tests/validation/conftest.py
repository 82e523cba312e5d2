"""Fixtures for the validation tests: reference documents read from ../shared/reference (never copied)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def phenopacket_dir(reference_dir: Path) -> Path:
    return reference_dir / "phenopackets"


@pytest.fixture(scope="session")
def pxf_dir(phenopacket_dir: Path) -> Path:
    return phenopacket_dir / "_phenopacket-tools"


@pytest.fixture(scope="session")
def fhir_dir(reference_dir: Path) -> Path:
    return reference_dir / "fhir"


@pytest.fixture(scope="session")
def _valid_packet(pxf_dir: Path) -> dict:
    return load(pxf_dir / "validate" / "base" / "missing-fields-valid.json")


@pytest.fixture
def packet(_valid_packet: dict) -> dict:
    """A small valid phenopacket (phenopacket-tools fixture) to break by hand: a fresh copy per test."""
    return copy.deepcopy(_valid_packet)


@pytest.fixture(scope="session")
def _marfan(fhir_dir: Path) -> dict:
    return load(fhir_dir / "mii-seltene-erkrankungen" / "Bundle-bundle-marfan-complete.json")


@pytest.fixture
def marfan(_marfan: dict) -> dict:
    """The MII Marfan transaction Bundle (Patient first, then Conditions, Observations, …): a fresh copy."""
    return copy.deepcopy(_marfan)
