"""Benchmarks, run as modules: `python -m bench.<name>`; see bench/README.md."""
