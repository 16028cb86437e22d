"""Reformer benchmarks: attention time per token against length (paper Fig. 5), memory against depth."""
