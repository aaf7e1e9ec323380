"""Benchmarks: `python -m bench.compaction`, `python -m bench.restore`, `python -m bench.query`."""
