"""Byte-level language modelling (Kitaev et al. 2020 §5 enwik8): a ReformerLM on raw MediaWiki XML bytes.

Command:
  python -m reformer_jax.train --config=configs/reformer/char_lm.py --workdir=$WORKDIR
  python -m reformer_jax.train --config=configs/reformer/char_lm.py:attention=full,reversible=false --workdir=$BASE
  python -m reformer_jax.train --config=configs/reformer/char_lm.py:size=enwik8 --workdir=$WORKDIR \
      --config.task.path=/data/enwik8.zip
Model: cpu (ours): the bundled Wikipedia XML excerpt (6.1 MB, 90/5/5 split like enwik8), L 256, 2 layers, d_model
  128, 2 heads of 64, LSH chunk 32 with 2 hashes and 8 buckets, reversible; `attention=full,reversible=false` is the
  same model with standard full attention and a plain residual stack (a Transformer) for the bpc comparison;
  `attention=full_shared_qk` keeps the shared QK (and no attending to oneself) but attends everywhere, no hashing;
  `attention=local_lsh` alternates local and LSH layers as the enwik8 config mixes them (local chunk 32, the LSH
  chunk), `attention=local_full` the same mix with full attention where LSH was (the mix's own baseline), and
  `attention=local` local layers only (how much of the text's context lies within reach).
  enwik8 (paper / trax reformer_enwik8.gin): L 65,536, 12 layers, d_model 768, FF 2048, 8 heads, attention pattern
  [local, local, LSH, local] (LSH chunk 256, 512 buckets, 2 hashes; local chunk 128), dropout 0.2, axial positions
  (128, 512) x (256, 512), Adam b2 0.98.
Expected: paper: 1.19 bpc after 20k steps (enwik8 test), 1.05 with longer tuned training. Ours (cpu):
  reformer_jax/README.md "Character LM" (results/reformer_char_lm.json).
Runtime: cpu: see reformer_jax/README.md; enwik8: not stated in the paper (TPU).
"""

import ml_collections

from configs.reformer import common
from core import config as config_lib

SIZES = {
  "cpu": dict(
    model=dict(d_model=128, d_ff=256, n_layers=2, n_heads=2, d_head=64, attention=("lsh",), n_hashes=2, n_buckets=8,
               chunk_len=32, local_chunk_len=32, max_len=256),
    task=dict(corpus="wikipedia_xml", seq_len=256, eval_examples=128),
    train=dict(batch_size=16, total_steps=800, log_every=50, eval_every=200, checkpoint_every=200),
    optimizer=dict(peak_lr=1e-3, warmup_steps=100),
  ),
  "enwik8": dict(
    model=dict(d_model=768, d_ff=2048, n_layers=12, n_heads=8, d_head=96, attention=("local", "local", "lsh", "local"),
               n_hashes=2, n_buckets=512, chunk_len=256, local_chunk_len=128, dropout_rate=0.2,
               attention_dropout_rate=0.2, ff_dropout_rate=0.2, axial_pos_shape=(128, 512), axial_pos_dims=(256, 512),
               max_len=65_536, ff_chunk_size=0),
    task=dict(corpus="enwik8", seq_len=65_536, eval_examples=128),
    train=dict(batch_size=8, total_steps=20_000, log_every=100, eval_every=2000, checkpoint_every=2000),
    optimizer=dict(peak_lr=1e-4, warmup_steps=2000),
  ),
}  # fmt: skip
ATTENTION = {  # config arg -> the layers' attention pattern (cycled over the layers)
  "lsh": ("lsh",),
  "full": ("full",),  # a Transformer's attention: separate Q and K
  "full_shared_qk": ("full_shared_qk",),  # Reformer's shared-QK attention over every position, no hashing
  "local_lsh": ("local", "lsh"),  # the paper's enwik8 model mixes local and LSH layers ([local, local, LSH, local])
  "local_full": ("local", "full"),  # that mix with a Transformer's attention in the LSH layers' place
  "local": ("local",),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_lib.parse_arg(arg, size="cpu", attention="lsh", reversible=True, n_hashes=0)
  if arg.size not in SIZES:
    raise config_lib.ConfigError(f"config arg size: unknown value {arg.size!r} (allowed: {', '.join(SIZES)})")
  if arg.attention not in ATTENTION:
    raise config_lib.ConfigError(
      f"config arg attention: unknown value {arg.attention!r} (allowed: {', '.join(ATTENTION)})"
    )
  row = SIZES[arg.size]
  config = common.base_config("char_lm", **row["model"], reversible=arg.reversible)
  if arg.attention != "lsh":
    config.model.attention = ATTENTION[arg.attention]
  if arg.n_hashes:  # 0 = the size's own (cpu 2, enwik8 2)
    config.model.n_hashes = arg.n_hashes
  config.task.update(row["task"])
  config.train.update(row["train"])
  config.optimizer.update(row["optimizer"])
  # The LSH model also evaluated with full shared-QK attention and 8 hashes on its own parameters (what LSH costs).
  config.eval.update(dict(full=True, n_hashes=(8,)))
  return config
