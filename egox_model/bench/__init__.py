"""Benchmarks behind `egox bench`: each reports its figure beside its baseline."""
