"""Benchmarks run on demand (not tests): ``python -m benchmarks.bench_routing``."""
