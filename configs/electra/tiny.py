"""ELECTRA-Tiny: a CPU-sized ELECTRA run (and its compute-matched MLM twin) on the bundled Wikipedia + Lee corpus.

Command:
  python -m electra_jax.pretrain --config=configs/electra/tiny.py --workdir=$WORKDIR
  python -m electra_jax.pretrain --config=configs/electra/tiny.py:mlm=true --workdir=$WORKDIR_MLM
Model: discriminator H 128, 4 layers, 2 heads, FFN 512, E 128; generator 1/4 (32 hidden, 1 head, FFN 128); L 128,
  batch 32, 300 steps, peak LR 1e-4 (warmup 30 × linear decay), Adam without bias correction. The MLM twin gets the
  steps that spend the same pretraining FLOPs (520, `electra_jax.flops`). With this no-bias-correction Adam, peak
  LR 1e-3 collapses both objectives to the unigram prior within ~50 steps (discriminator AUC 0.50, MLM accuracy
  0.057 = always the top token). At 1e-4 the MLM twin is still at unigram level after 1,040 steps (accuracy
  0.06-0.08). Bias-corrected Adam, b2 0.98, LR 1e-3, no dropout reaches held-out MLM accuracy 0.122 in 1,500 steps
  (electra_jax/README.md "Why nothing transfers").
Expected: no paper number (not a paper size). Ours (2 CPU cores, seed 0): generator MLM loss 10.2 → 7.4, held-out
  discriminator AUC 0.78 at step 100 and 0.67 at step 300 (it falls as the generator's samples get more plausible),
  disc loss 0.64 → 0.37; see electra_jax/README.md "Results".
Runtime: ~0.75-0.9 s/step on 2 CPU cores (300 steps: 5 min 0 s on 2026-12-01, incl. ~30 s of compilation and
  tokenization; `make demo` runs 150 steps: 2 min 35 s).
"""

import ml_collections

from configs.electra import common
from core import config as config_lib


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_lib.parse_arg(arg, mlm=False)
  config = common.pretrain_config("tiny", mlm=arg.mlm)  # sizes, LR, steps: common.SIZES["tiny"]
  config.train.update(dict(log_every=20, eval_every=100, eval_batches=4, checkpoint_every=100))
  return config
