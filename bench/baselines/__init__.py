"""Baseline servers the benchmark compares Lastra Chat with (same workload, same machine)."""
