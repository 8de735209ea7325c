"""Benchmarks (`make bench`): figures measured side by side in one run, reported as ratios."""
