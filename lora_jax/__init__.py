"""LoRA: low-rank adaptation of large language models (Hu et al. 2021, arXiv 2106.09685). Imports only `core`."""
