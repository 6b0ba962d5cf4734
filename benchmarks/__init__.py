"""Benchmarks of textsearch: ``python benchmarks/run.py`` (see its docstring)."""
