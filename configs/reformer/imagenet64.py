"""imagenet64 (Kitaev et al. 2020 §5, trax reformer_imagenet64.gin): a ReformerLM over 64·64·3 = 12,288 bytes.

Command (the data must be prepared with tfds on that machine; none is available offline here):
  python -m reformer_jax.train --config=configs/reformer/imagenet64.py --workdir=$WORKDIR \
      --config.task.tfds_dir=gs://bucket/tensorflow_datasets
Model: 6 layers, d_model 1024, FF 4096, 8 heads of 128, LSH chunk 128 with 192 buckets and 2 hashes, axial positions
  (64, 64, 3) x (384, 384, 256), reversible.
Expected: paper: 3.740 bits/dim (6 layers), 3.710 (12 layers), as listed by secondary leaderboards (unverified).
Runtime: not stated in the paper (TPU); not run here.
"""

import ml_collections

from configs.reformer import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = common.base_config(
    "imagenet64",
    d_model=1024, d_ff=4096, n_layers=6, n_heads=8, d_head=128, attention=("lsh",), n_hashes=2, n_buckets=192,
    chunk_len=128, axial_pos_shape=(64, 64, 3), axial_pos_dims=(384, 384, 256), max_len=12_288, dropout_rate=0.0,
  )  # fmt: skip
  config.task.update(dict(seq_len=12_288, eval_examples=64))
  config.train.update(dict(batch_size=8, total_steps=100_000, log_every=100, eval_every=5000, checkpoint_every=5000))
  config.optimizer.update(dict(peak_lr=1e-4, warmup_steps=2000))
  return config
