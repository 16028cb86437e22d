"""ELECTRA: replaced-token detection (Clark et al. 2020, arXiv 2003.10555). Imports only `core` and itself."""
