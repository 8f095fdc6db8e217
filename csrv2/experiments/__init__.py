"""Experiments built on the library: the paper's tables (grid) and the retrieval benchmark (bench)."""
