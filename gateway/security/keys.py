"""The node's secrets: the pseudonymisation key and the operator token.

Both come from configuration when given, else are generated once into the data
directory with mode 0600. Neither is ever logged or stored in the database.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from gateway.config import Config

KEY_FILE = "secret.key"
KEY_CHAIN_FILE = "key-chain"  # rotation keys, oldest first, one hex key a line (gateway keys rotate)
OPERATOR_TOKEN_FILE = "operator.token"


def read_or_create(path: Path, make: Callable[[], str]) -> str:
    """A key file's text, made by `make` on first use (mode 0600, fsynced). O_EXCL: when two workers start at
    once, exactly one writes and both read the same value."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    else:
        return text or _written_by_the_other(path)
    value = make().strip()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _written_by_the_other(path)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return value


def _written_by_the_other(path: Path, seconds: float = 2.0) -> str:
    """The other writer may be between its create and its write: wait for the text."""
    deadline = time.monotonic() + seconds
    while True:
        text = path.read_text(encoding="utf-8").strip()
        if text or time.monotonic() > deadline:
            return text
        time.sleep(0.01)


def secret_key(cfg: Config) -> bytes:
    """The pseudonymisation key (hex strings are decoded, other text used as UTF-8), with its rotation chain."""
    from gateway.security.pseudonym import ChainedKey

    text = cfg.secret_key or read_or_create(Path(cfg.data_dir) / KEY_FILE, lambda: secrets.token_hex(32))
    try:
        first = bytes.fromhex(text)
    except ValueError:
        first = text.encode("utf-8")
    return ChainedKey(first, key_chain(Path(cfg.data_dir)))


def key_chain(data_dir: Path) -> tuple[bytes, ...]:
    try:
        lines = (Path(data_dir) / KEY_CHAIN_FILE).read_text(encoding="utf-8").split()
    except FileNotFoundError:
        return ()
    return tuple(bytes.fromhex(line) for line in lines)


def operator_tokens(cfg: Config) -> tuple[str, ...]:
    """Bearer tokens that may write. Generated into the data directory when none is configured."""
    if cfg.operator_tokens:
        return cfg.operator_tokens
    return (read_or_create(Path(cfg.data_dir) / OPERATOR_TOKEN_FILE, lambda: secrets.token_urlsafe(32)),)


def is_operator(cfg_tokens: tuple[str, ...], presented: str | None) -> bool:
    """Constant-time comparison of a presented bearer token with the operator tokens."""
    if not presented:
        return False
    return any(secrets.compare_digest(presented.encode(), t.encode()) for t in cfg_tokens)
