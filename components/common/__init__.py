"""Shared code for all components: data contract, storage I/O, errors, reports."""
