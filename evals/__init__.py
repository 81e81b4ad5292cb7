"""Evaluations and benchmarks; never imported by product code."""
