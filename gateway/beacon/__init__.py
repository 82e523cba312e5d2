"""Beacon v2: request model and parsing, entry-type registry, granularity, response envelopes.

The framework here is generic over entry types (`registry.EntryType`); `g_variants`
is the first entry type registered, the other default-model types plug in the same way.
"""
