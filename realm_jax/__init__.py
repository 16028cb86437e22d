"""REALM: retrieval-augmented language model pretraining (Guu et al. 2020, arXiv 2002.08909). Imports only `core`."""
