"""ELECTRA-Small (Clark et al. 2020, Table 1; hyperparameters Table 6) and its compute-matched BERT-Small twin.

Command:
  python -m electra_jax.pretrain --config=configs/electra/small.py --workdir=$WORKDIR
  python -m electra_jax.pretrain --config=configs/electra/small.py:mlm=true --workdir=$WORKDIR   # BERT-Small
Model: H 256, 12 layers, 4 heads, FFN 1024, E 128 (13.48M-parameter discriminator encoder); generator 1/4: 64 hidden,
  1 head, FFN 256, 12 layers, sharing the embeddings. LR 5e-4, batch 128, 1M steps (twin 1.45M), L 128, mask 15%,
  warmup 10k × linear decay, λ = 50. Paper data: Wikipedia + BooksCorpus (`--config.data.corpus=tfds:wikipedia`).
Expected: GLUE dev 79.9 (paper Table 1; BERT-Small 75.1 at the same compute, 1.4e18 FLOPs); ours: see
  electra_jax/README.md "Results". Pretraining FLOPs by electra_jax.flops: 1.29e18 (ELECTRA), 1.42e18 (twin).
Runtime: paper 4 days on one V100 (0.35 s/step); here 16-20 s/step on 2 shared CPU cores (not a CPU job).
"""

import ml_collections

from configs.electra import common
from core import config as config_lib


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_lib.parse_arg(arg, mlm=False)
  return common.pretrain_config("small", mlm=arg.mlm)
