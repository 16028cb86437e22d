"""ELECTRA's sizes and hyperparameters, one row per size, and the pretraining recipe the size files build from them.

Clark et al. 2020, Appendix A: Table 6 (pretraining: model shape, generator size, learning rate, batch, steps,
masking), Table 7 (finetuning: learning rate, layer-wise decay) and §3.4 / Table 1 (the BERT twins' step counts,
matched on pretraining compute by `electra_jax.flops`). `tiny` is this project's CPU size, not a paper size.
Benchmarks read the same rows (`SIZES["small"]["hidden_size"]`, ...). Imports ml_collections, core.config and
configs.core.common (the BERT encoder fields).
"""

import ml_collections

from configs.core import common as core_common
from core import config as config_lib

SIZES = {
  "tiny": dict(
    hidden_size=128,
    num_layers=4,
    num_heads=2,
    intermediate_size=512,
    embedding_size=128,
    generator_fraction=1 / 4,
    peak_lr=1e-4,
    warmup_steps=30,
    batch_size=32,
    total_steps=300,
    mlm_total_steps=520,  # the MLM twin's compute-matched steps (electra_jax.flops; pinned by tests/test_configs.py)
    seq_len=128,
    mask_prob=0.15,
  ),
  "small": dict(
    hidden_size=256,
    num_layers=12,
    num_heads=4,
    intermediate_size=1024,
    embedding_size=128,
    generator_fraction=1 / 4,
    peak_lr=5e-4,
    warmup_steps=10_000,
    batch_size=128,
    total_steps=1_000_000,
    mlm_total_steps=1_450_000,
    seq_len=128,
    mask_prob=0.15,
  ),
  "base": dict(
    hidden_size=768,
    num_layers=12,
    num_heads=12,
    intermediate_size=3072,
    embedding_size=768,
    generator_fraction=1 / 3,
    peak_lr=2e-4,
    warmup_steps=10_000,
    batch_size=256,
    total_steps=766_000,
    mlm_total_steps=1_000_000,
    seq_len=512,
    mask_prob=0.15,
  ),
  "large": dict(
    hidden_size=1024,
    num_layers=24,
    num_heads=16,
    intermediate_size=4096,
    embedding_size=1024,
    generator_fraction=1 / 4,
    peak_lr=2e-4,
    warmup_steps=10_000,
    batch_size=2048,
    total_steps=400_000,
    mlm_total_steps=400_000,
    seq_len=512,
    mask_prob=0.25,
  ),
}

# Finetuning (Table 7): peak LR per size (tiny 3e-4: at 1e-3 it collapses to the majority class), layer-wise decay.
FINETUNE = {
  "tiny": dict(peak_lr=3e-4, layerwise_lr_decay=0.8),
  "small": dict(peak_lr=3e-4, layerwise_lr_decay=0.8),
  "base": dict(peak_lr=1e-4, layerwise_lr_decay=0.8),
  "large": dict(peak_lr=5e-5, layerwise_lr_decay=0.9),
}

# The encoder fields every size shares: BERT's, which ELECTRA keeps (Table 6: dropout 0.1, WordPiece vocab).
ENCODER = core_common.ENCODER
SHAPE_FIELDS = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "embedding_size")


def model(size: str) -> dict:
  """The `config.model` fields (those of `core.bert.BertConfig`) for one row of SIZES."""
  return {**ENCODER, **{name: SIZES[size][name] for name in SHAPE_FIELDS}}


def pretrain_config(size: str, *, mlm: bool = False) -> ml_collections.ConfigDict:
  """ELECTRA-`size` pretraining (Table 6; reference `configure_pretraining.py`), or with `mlm` its BERT twin.

  The twin (§3.4 / Table 1) keeps the encoder, data and optimizer, trains the MLM objective for
  `mlm_total_steps` (the same pretraining FLOPs, `electra_jax.flops`) and corrupts tokens as BERT does.
  """
  row = SIZES[size]
  config = config_lib.default_config()
  config.model = ml_collections.ConfigDict(model(size))
  config.objective = ml_collections.ConfigDict(
    dict(
      name="mlm" if mlm else "electra",
      generator_hidden_fraction=row["generator_fraction"],
      gen_weight=1.0,
      disc_weight=50.0,  # λ
      temperature=1.0,
      disallow_correct=False,
      disc_on_masked_only=False,  # True = the "ELECTRA 15%" ablation (paper Table 5)
    )
  )
  # ELECTRA's masking: 85% [MASK], 15% unchanged, no random tokens. The MLM twin uses BERT's 80/10/10 (Devlin et al.
  # §3.1); the reference repo's BERT baseline reused ELECTRA's 85/15 (set the two fractions to 0.85 / 0 for that).
  config.masking = ml_collections.ConfigDict(
    dict(
      mask_prob=row["mask_prob"],
      mask_token_fraction=0.8 if mlm else 0.85,
      random_token_fraction=0.1 if mlm else 0.0,
      max_predictions_per_seq=0,  # 0 = the reference's int((p + 0.005) · L)
    )
  )
  config.data = ml_collections.ConfigDict(
    dict(
      corpus="bundled",  # bundled Wikipedia + Lee corpus; at scale tfds:wikipedia/20230601.en or tfds:openwebtext
      seq_len=row["seq_len"],
      eval_fraction=0.05,
      max_documents=0,  # 0 = all
      vocab_path="",  # '' = the bundled BERT uncased vocab
      tfds_dir="",
      shard_by="rows",  # rows: same global batch on any number of hosts; documents: each host reads its own
    )
  )
  config.flops = ml_collections.ConfigDict(dict(output_frac=0.15625, backward_factor=1.0))
  config.train.update(
    dict(
      batch_size=row["batch_size"],
      total_steps=row["mlm_total_steps"] if mlm else row["total_steps"],
      log_every=100,
      eval_every=10_000,
      eval_batches=8,
      checkpoint_every=10_000,
    )
  )
  config.optimizer.update(
    dict(
      name="adamw",
      peak_lr=row["peak_lr"],
      schedule="warmup_times_linear",
      warmup_steps=row["warmup_steps"],
      end_lr_fraction=0.0,
      weight_decay=0.01,
      b1=0.9,
      b2=0.999,
      eps=1e-6,
      clip_norm=1.0,
    )
  )
  config.optimizer.bias_correction = False  # ELECTRA's AdamWeightDecayOptimizer (electra_jax.optim)
  return config
