"""Benchmarks: throughput and latency against the seed recipe."""
