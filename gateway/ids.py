"""The one dataset-id rule, checked at every entry point (HTTP, CLI, configuration) before anything is written.

A dataset id names a directory of the variant store and a row of the metadata store, and travels in
URLs and Beacon `datasetIds`: letters, digits, '.', '_' and '-', 1-128 characters, not starting with
a dot or a dash (so it is never a hidden file nor an option).
"""

from __future__ import annotations

import re

from gateway.errors import BadInput

DATASET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
DATASET_ID_RULE = "1-128 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"


class InvalidDatasetId(BadInput):
    code = "invalid-dataset-id"


def is_dataset_id(value: object) -> bool:
    # fullmatch: `$` alone would let a trailing newline through
    return isinstance(value, str) and DATASET_ID.fullmatch(value) is not None


def check_dataset_id(value: object) -> str:
    """`value` when it is a well-formed dataset id; else InvalidDatasetId saying the rule."""
    if not isinstance(value, str) or DATASET_ID.fullmatch(value) is None:
        raise InvalidDatasetId(f"dataset id {str(value)[:140]!r} is not valid: {DATASET_ID_RULE}")
    return value
