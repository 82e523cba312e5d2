"""What `pip install .` ships: every data file the code reads must be in the wheel.

The tests run from the checkout, where a missing package-data pattern goes unnoticed;
a user's installed gateway would then fail at start (as `--demo` once did).
"""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("gateway", "translators", "mappings", "schemas")
NOT_SHIPPED = {".py", ".pyc", ".md"}  # code is shipped as modules; READMEs are for readers of the tree


def test_every_data_file_is_matched_by_package_data():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]["*"]
    missing = []
    for package in PACKAGES:
        for path in (REPO / package).rglob("*"):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix in NOT_SHIPPED:
                continue
            if not any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns):
                missing.append(str(path.relative_to(REPO)))
    assert not missing, f"data files that `pip install .` would leave out: {missing}"


def test_packages_are_discovered_as_namespaces_so_data_folders_ship():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["packages"]["find"].get("namespaces", True) is True
    assert set(config["packages"]["find"]["include"]) == {f"{p}*" for p in PACKAGES}
