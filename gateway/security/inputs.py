"""Checks on the request line and headers that come before any handler sees them.

- NUL characters in the path or query string: PostgreSQL text cannot hold them, so an id
  carrying one would reach a query and fail there (a 500); they are refused with a 400.
- `X-Request-ID`: echoed in the response and written to the audit log, so only a short
  token of safe characters is taken; anything else is replaced by a fresh id (the
  caller's value is not echoed, not logged).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def request_id_from(header: str | None) -> str:
    """The caller's request id when it is a plain token of at most 128 characters, else a new one."""
    if header and REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def nul_in_request(path: str, query_items: Iterable[tuple[str, str]]) -> bool:
    """True when the decoded path or any decoded query name or value holds a NUL character."""
    if "\x00" in path:
        return True
    return any("\x00" in name or "\x00" in value for name, value in query_items)
