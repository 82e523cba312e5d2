"""Walking a JSON document by place, for the mutation tests of the fast-path validators."""

from __future__ import annotations


def places(node, path=()):
    """Every (path, value) in a JSON document, the document itself first."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from places(value, (*path, key))
    elif isinstance(node, list):
        for n, value in enumerate(node):
            yield from places(value, (*path, n))


def holder(doc, path):
    """The value at `path` (the container a mutation changes)."""
    for step in path:
        doc = doc[step]
    return doc
