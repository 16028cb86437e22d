"""BERT masked-LM pretraining on the bundled Wikipedia excerpt (Devlin et al. 2018 §3.1; core's reference job).

Command:
  python -m core.pretrain_mlm --config=configs/core/bert_mlm.py:tiny --workdir=$WORKDIR
  python -m core.pretrain_mlm --config=configs/core/bert_mlm.py:minilm --workdir=$WORKDIR   # init from MiniLM-L6
Args (`:size=...` or a bare size): tiny | mini | small | minilm | base (configs/core/common.py SIZES).
Expected: tiny: MLM loss falls from ~10.3 (ln 30522) within 200 steps on one CPU; BERT-Base MLM accuracy ~0.7 after
  1M steps on Wikipedia+BooksCorpus (paper scale, not run here).
Runtime: tiny ~1 min on 2 CPU cores (200 steps); minilm ~5 s/step on 2 CPU cores at batch 32 x 128.
"""

import ml_collections

from configs.core import common
from core import config as config_lib

# Megatron-style tensor parallelism for the FFN over the mesh's `model` axis (params and their Adam moments):
# --config.mesh.model=2 --config.mesh.rules='MEGATRON_FFN' is not expressible on the CLI, so use `:tp=true`.
MEGATRON_FFN = (
  (r".*/intermediate/kernel", (None, "model")),
  (r".*/intermediate/bias", ("model",)),
  (r".*/output/kernel", ("model", None)),
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_lib.parse_arg(arg, size="tiny", tp=False)
  if arg.size not in common.SIZES:
    raise config_lib.ConfigError(f"config arg size: unknown value {arg.size!r} (allowed: {', '.join(common.SIZES)})")
  tiny = arg.size == "tiny"

  config = config_lib.default_config()
  config.model = ml_collections.ConfigDict(common.model(arg.size))
  config.data = ml_collections.ConfigDict(
    dict(
      corpus="wikipedia",
      seq_len=64 if tiny else 128,
      eval_fraction=0.05,
      max_documents=0,
      vocab_path="",
      shard_by="rows",
    )
  )  # rows: same global batch on any number of hosts; documents: each host reads its own
  config.mlm = ml_collections.ConfigDict(dict(mask_prob=0.15, mask_token_fraction=0.8, random_token_fraction=0.1))
  config.init_from = "minilm" if arg.size == "minilm" else ""
  config.train.update(
    dict(
      batch_size=16 if tiny else 32,
      total_steps=200 if tiny else 10_000,
      log_every=20 if tiny else 100,
      eval_every=100 if tiny else 1000,
      checkpoint_every=100 if tiny else 1000,
    )
  )
  config.optimizer.update(
    dict(
      name="adamw",
      peak_lr=1e-3 if tiny else 1e-4,
      schedule="warmup_linear",
      warmup_steps=20 if tiny else 1000,
      weight_decay=0.01,
      clip_norm=1.0,
      eps=1e-6,
    )
  )
  if arg.tp:
    config.mesh.update(dict(model=2, rules=MEGATRON_FFN))
  return config
