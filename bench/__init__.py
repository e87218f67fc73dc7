"""Benchmarks: scripts that print numbers (python -m bench.<name>); never run by pytest."""
