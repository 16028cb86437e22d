"""The duplication task 0w0w (Kitaev et al. 2020 §5, Table 2): one layer, trained with full or LSH attention,
evaluated with full attention and LSH with 1, 2, 4 and 8 hashes on the same parameters.

Command:
  python -m reformer_jax.train --config=configs/reformer/duplication.py:attention=lsh,n_hashes=4 --workdir=$WORKDIR
  python -m reformer_jax.train --config=configs/reformer/duplication.py:attention=full --workdir=$WORKDIR_FULL
  python -m reformer_jax.train --config=configs/reformer/duplication.py:size=paper,attention=lsh,n_hashes=2 ...
Model: paper: L 1024, 1 layer, d_model 256, 4 heads, symbols 1..127; shared-QK attention (`full` = every key in reach
  with the LSH layer's parameters), LSH chunk 64 with 2L/64 = 32 buckets. cpu: L 128, chunk 16, 16 buckets, d_model
  128, 2 heads (our choice: the same task and mechanism at 1/8 of the length).
Expected: paper Table 2: LSH-4-trained 99.9 / 100 at LSH-4 / LSH-8 evaluation; full-trained 52.5 under LSH-1
  evaluation, 100 under full. Ours: reformer_jax/README.md "Duplication" (results/reformer_duplication.json).
Runtime: cpu: see reformer_jax/README.md; paper: not stated in the paper.
"""

import ml_collections

from configs.reformer import common
from core import config as config_lib

SIZES = {
  "cpu": dict(seq_len=128, d_model=128, d_ff=256, n_heads=2, d_head=64, chunk_len=16, n_buckets=16, batch_size=32,
              total_steps=1000, peak_lr=1e-3, warmup_steps=100),
  "paper": dict(seq_len=1024, d_model=256, d_ff=256, n_heads=4, d_head=64, chunk_len=64, n_buckets=32, batch_size=64,
                total_steps=150_000, peak_lr=1e-3, warmup_steps=1000),
}  # fmt: skip
ATTENTION = {"lsh": "lsh", "full": "full_shared_qk"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_lib.parse_arg(arg, size="cpu", attention="lsh", n_hashes=4)
  if arg.size not in SIZES:
    raise config_lib.ConfigError(f"config arg size: unknown value {arg.size!r} (allowed: {', '.join(SIZES)})")
  if arg.attention not in ATTENTION:
    raise config_lib.ConfigError(f"config arg attention: unknown value {arg.attention!r} (allowed: lsh, full)")
  row = SIZES[arg.size]
  config = common.base_config(
    "duplication",
    vocab_size=128,
    d_model=row["d_model"],
    d_ff=row["d_ff"],
    n_layers=1,
    n_heads=row["n_heads"],
    d_head=row["d_head"],
    attention=(ATTENTION[arg.attention],),
    n_hashes=arg.n_hashes,
    n_buckets=row["n_buckets"],
    chunk_len=row["chunk_len"],
    max_len=row["seq_len"],
  )
  config.task.update(dict(seq_len=row["seq_len"], vocab_size=128, eval_examples=256))
  config.eval.update(dict(full=True, n_hashes=(1, 2, 4, 8)))
  config.train.update(
    dict(batch_size=row["batch_size"], total_steps=row["total_steps"], log_every=100, eval_every=500,
         checkpoint_every=1000)
  )  # fmt: skip
  config.optimizer.update(dict(peak_lr=row["peak_lr"], warmup_steps=row["warmup_steps"]))
  return config
