"""The shared body of `configs/electra/{tiny,small,base,large}.py`: ELECTRA's pretraining hyperparameters.

Clark et al. 2020, Appendix A, Table 6 (pretraining hyperparameters) and §3.4 / Table 1 (compute-matched BERT
baselines): each size also builds its MLM twin (`:mlm=true`) with the same encoder, data and optimizer and the
paper's BERT step count (Small 1.45M, Base 1M, Large 400k), so the two runs are matched on compute
(`electra_jax.flops`). Reference code defaults: `configure_pretraining.py`.
"""

from __future__ import annotations

import ml_collections

from core import bert as bert_lib
from core import config as config_lib
from core import train as train_lib

# hidden, layers, heads, FFN, E, generator fraction, peak LR, batch, ELECTRA steps, MLM-twin steps, seq len, mask p
PAPER_SIZES = {
  "small": (256, 12, 4, 1024, 128, 1 / 4, 5e-4, 128, 1_000_000, 1_450_000, 128, 0.15),
  "base": (768, 12, 12, 3072, 768, 1 / 3, 2e-4, 256, 766_000, 1_000_000, 512, 0.15),
  "large": (1024, 24, 16, 4096, 1024, 1 / 4, 2e-4, 2048, 400_000, 400_000, 512, 0.25),
  # CPU size: minutes on 2 cores. The MLM twin's steps are matched on compute by `electra_jax.flops` at build time.
  "tiny": (128, 4, 2, 512, 128, 1 / 4, 1e-4, 32, 300, 0, 128, 0.15),
}
OBJECTIVES = ("electra", "mlm")


def base_config(size: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """ELECTRA-`size` (objective 'electra'), or with `arg` 'mlm=true' its compute-matched MLM twin (objective 'mlm')."""
  args = config_lib.parse_arg(arg, mlm=False)
  if size not in PAPER_SIZES:
    raise config_lib.ConfigError(f"size: unknown value {size!r} (allowed: {', '.join(PAPER_SIZES)})")
  hidden, layers, heads, ffn, emb, fraction, lr, batch, steps, mlm_steps, seq_len, mask_prob = PAPER_SIZES[size]
  tiny = size == "tiny"

  config = train_lib.default_config()
  config.model = bert_lib.model_section(hidden, layers, heads, ffn, emb)
  config.objective = ml_collections.ConfigDict(
    dict(
      name="mlm" if args.mlm else "electra",
      generator_hidden_fraction=fraction,
      gen_weight=1.0,
      disc_weight=50.0,
      temperature=1.0,
      disallow_correct=False,
      disc_on_masked_only=False,  # True = the "ELECTRA 15%" ablation (paper Table 5)
    )
  )
  # ELECTRA's masking: 85% [MASK], 15% unchanged, no random tokens. The MLM twin uses BERT's 80/10/10 (Devlin et al.
  # §3.1); the reference repo's BERT baseline reused ELECTRA's 85/15 (set the two fractions to 0.85 / 0 for that).
  config.masking = ml_collections.ConfigDict(
    dict(
      mask_prob=mask_prob,
      mask_token_fraction=0.8 if args.mlm else 0.85,
      random_token_fraction=0.1 if args.mlm else 0.0,
      max_predictions_per_seq=0,  # 0 = the reference's int((p + 0.005) · L)
    )
  )
  config.data = ml_collections.ConfigDict(
    dict(
      corpus="bundled",  # bundled Wikipedia articles + Lee corpus; tfds:wikipedia/20230601.en or tfds:openwebtext at scale
      seq_len=seq_len,
      eval_fraction=0.05,
      max_documents=0,
      vocab_path="",
      tfds_dir="",
      shard_by="rows",
    )
  )
  config.flops = ml_collections.ConfigDict(dict(output_frac=0.15625, backward_factor=1.0))
  total_steps = steps
  if args.mlm:
    total_steps = mlm_steps if mlm_steps else _compute_matched_tiny_steps(config, steps)
  config.train.update(
    dict(
      batch_size=batch,
      total_steps=total_steps,
      log_every=20 if tiny else 100,
      eval_every=100 if tiny else 10_000,
      eval_batches=4 if tiny else 8,
      checkpoint_every=100 if tiny else 10_000,
    )
  )
  config.optimizer.update(
    dict(
      name="adamw",
      peak_lr=lr,
      schedule="warmup_times_linear",
      warmup_steps=30 if tiny else 10_000,
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


def _compute_matched_tiny_steps(config: ml_collections.ConfigDict, electra_steps: int) -> int:
  """Steps for the MLM twin so that it spends the ELECTRA run's pretraining FLOPs."""
  from electra_jax import flops, pretrain  # local: keeps config files importable without building the model

  electra = config.copy_and_resolve_references()
  electra.objective.name = "electra"
  disc, gen = pretrain.model_configs(electra)
  batch, seq_len = PAPER_SIZES["tiny"][7], config.data.seq_len
  target = electra_steps * flops.pretrain_flops_per_step("electra", disc, batch, seq_len, gen)
  return flops.compute_matched_steps(target, flops.pretrain_flops_per_step("mlm", disc, batch, seq_len))
