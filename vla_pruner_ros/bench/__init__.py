"""Benchmark programs: tick latency per method (``speed``), the papers' sizes on a GPU (``papers``), the live
node (``node_bench``, ``two_host``)."""
