"""Providers: one module per infrastructure behind the ``Provider`` protocol."""
