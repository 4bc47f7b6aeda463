"""Benchmarks: speed (``algd bench-speed``)."""
