"""The security tests' fixtures live in sechelpers.py (a unique module name: test rooms share `conftest`)."""

from tests.security.sechelpers import fake_variants, jwks_files, keys, mint, secure_node  # noqa: F401
