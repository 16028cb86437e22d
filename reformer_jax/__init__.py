"""Reformer: LSH attention and reversible layers (Kitaev et al. 2020, arXiv 2001.04451). Imports only `core`."""
