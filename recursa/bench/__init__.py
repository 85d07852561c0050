"""Benchmarks for recursive language models: task generators, scorers, runner and reports."""
