"""ELECTRA-Base (Clark et al. 2020, Table 2; hyperparameters Table 6) and its BERT-Base twin.

Command:
  python -m electra_jax.pretrain --config=configs/electra/base.py --workdir=$WORKDIR
  python -m electra_jax.pretrain --config=configs/electra/base.py:mlm=true --workdir=$WORKDIR   # BERT-Base, 1M steps
Model: H 768, 12 layers, 12 heads, FFN 3072, E 768; generator 1/3: 256 hidden, 4 heads, FFN 1024, sharing the
  embeddings. LR 2e-4, batch 256, 766k steps (twin 1M), L 512, mask 15%, warmup 10k × linear decay, λ = 50.
Expected: GLUE dev 85.1 (paper Table 1; BERT-Base 82.2); ours: not run (accelerator job). Pretraining FLOPs by
  electra_jax.flops: 6.43e19 for both runs (matched, as in the paper).
Runtime: paper ~4 days on 16 TPUv3 chips (Appendix); not a CPU job.
"""

import ml_collections

from configs.electra import common
from core import config as config_lib


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_lib.parse_arg(arg, mlm=False)
  return common.pretrain_config("base", mlm=arg.mlm)
