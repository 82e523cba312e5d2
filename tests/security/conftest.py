"""The security tests' fixtures live in sechelpers.py (a unique module name: test rooms share `conftest`)."""

from sechelpers import fake_variants, jwks_files, keys, mint, secure_node  # noqa: F401
