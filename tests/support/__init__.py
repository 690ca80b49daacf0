"""Test-only helpers (never imported by production code)."""
