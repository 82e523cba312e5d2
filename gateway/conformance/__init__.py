"""Conformance of remote Beacon v2 nodes (`gateway verify`)."""

from gateway.conformance.verify import Check, VerifyReport, verify

__all__ = ["Check", "VerifyReport", "verify"]
