"""ELECTRA-Large, 400k steps (Clark et al. 2020, Table 2 "ELECTRA-400K"; hyperparameters Table 6) and its MLM twin.

Command:
  python -m electra_jax.pretrain --config=configs/electra/large.py --workdir=$WORKDIR --multihost
  python -m electra_jax.pretrain --config=configs/electra/large.py:mlm=true --workdir=$WORKDIR --multihost
Model: H 1024, 24 layers, 16 heads, FFN 4096, E 1024; generator 1/4: 256 hidden, 4 heads, FFN 1024, sharing the
  embeddings. LR 2e-4, batch 2048, 400k steps (twin 400k), L 512, mask 25% (130 predictions per row), warmup 10k.
  ELECTRA-1.75M: --config.train.total_steps=1750000.
Expected: GLUE dev 89.0 (paper Table 2; 89.5 at 1.75M steps, RoBERTa-500K 88.9); ours: not run (pod job).
  Pretraining FLOPs by electra_jax.flops: 7.12e20 (ELECTRA-400K), 6.14e20 (twin).
Runtime: paper ~ 400k steps on a TPUv3 pod (Appendix); not a CPU job.
"""

import ml_collections

from configs.electra import common
from core import config as config_lib


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_lib.parse_arg(arg, mlm=False)
  return common.pretrain_config("large", mlm=arg.mlm)
