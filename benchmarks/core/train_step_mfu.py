"""Model FLOPs utilisation of a BERT MLM training step (core.train step: fwd + bwd + AdamW) vs measured matmul peak.

Model FLOPs count the matmuls only (`core.flops`, the PaLM/Chinchilla convention): per token, forward =
2·(dense params touched) + 4·L·H per layer for QKᵀ and AV, plus the tied MLM head over all positions (E·V); training
= 3 × forward. Sizes are the rows of configs/core/common.py; tiny runs B=16, L=64, the others B=32, L=128.

  python -m benchmarks.core.train_step_mfu [--sizes tiny,small] [--steps 10]
"""

from __future__ import annotations

import argparse
import statistics

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.core import common
from configs.core import common as core_configs
from core import bert as bert_lib
from core import config as config_lib
from core import flops as flops_lib
from core import mlm, optim
from core import train as train_lib

def measure(size: str, steps: int) -> dict:
  config = bert_lib.from_model_section(core_configs.model(size)).validate()
  batch, seq_len = (16, 64) if size == "tiny" else (32, 128)
  model = bert_lib.BertForMlm(config)

  def loss_fn(params, batch_, key):
    masked, is_masked = mlm.mask_tokens(
      key,
      batch_["input_ids"],
      batch_["attention_mask"],
      mask_prob=0.15,
      mask_id=103,
      vocab_size=config.vocab_size,
      special_ids=(0, 101, 102, 103),
    )
    logits = model.apply(
      {"params": params},
      masked,
      None,
      batch_["attention_mask"],
      deterministic=False,
      rngs={"dropout": jax.random.fold_in(key, 1)},
    )
    loss, accuracy = mlm.mlm_loss(logits, batch_["input_ids"], is_masked)
    return loss, {"accuracy": accuracy}

  opt = config_lib.default_optimizer()
  opt.update(dict(peak_lr=1e-4, warmup_steps=10))
  tx, schedule = optim.make_optimizer(opt, 1000)
  task = train_lib.Task(
    init_params=lambda k: model.init(k, jnp.zeros((1, seq_len), jnp.int32))["params"], loss_fn=loss_fn, train_data=None
  )
  state = jax.jit(train_lib.init_state(task, tx, seed=0))()
  step = jax.jit(train_lib.make_train_step(loss_fn, tx, schedule), donate_argnums=0)
  rng = np.random.default_rng(0)
  data = {
    "input_ids": jnp.asarray(rng.integers(1000, 30000, (batch, seq_len)), jnp.int32),
    "attention_mask": jnp.ones((batch, seq_len), jnp.int32),
  }
  holder = {"state": state}

  def one_step():  # the step donates its state, so thread it through
    holder["state"], metrics = step(holder["state"], data)
    return metrics

  times = common.time_fn(one_step, warmup=2, repeats=steps)
  median = statistics.median(times)
  shape = flops_lib.TransformerShape.from_bert_config(config, seq_len)
  flops = flops_lib.mlm_train_flops(shape, batch, output_frac=1.0, backward_factor=2.0, matmul_only=True)
  return dict(
    size=size,
    hidden=config.hidden_size,
    layers=config.num_layers,
    heads=config.num_heads,
    ffn=config.intermediate_size,
    embedding=config.emb_size,
    batch=batch,
    seq_len=seq_len,
    params=bert_lib.param_count(holder["state"].params),
    median_step_s=median,
    tokens_per_s=batch * seq_len / median,
    model_flops_per_step=flops,
    model_flops_per_s=flops / median,
  )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="tiny,small")
  parser.add_argument("--steps", type=int, default=10)
  args = parser.parse_args()
  unknown = sorted(set(args.sizes.split(",")) - set(core_configs.SIZES))
  if unknown:
    parser.error(f"--sizes: unknown {unknown} (allowed: {', '.join(core_configs.SIZES)})")
  peak = common.measure_matmul_peak()
  rows = []
  for size in args.sizes.split(","):
    row = measure(size, args.steps)
    row["mfu"] = flops_lib.mfu(row["model_flops_per_step"], row["median_step_s"], peak["peak_flops"])
    rows.append(row)
    print(
      f"{size:6s} B={row['batch']} L={row['seq_len']} H={row['hidden']} layers={row['layers']} | "
      f"{row['median_step_s'] * 1e3:.1f} ms/step | {row['tokens_per_s']:.0f} tok/s | "
      f"{row['model_flops_per_s'] / 1e9:.1f} GFLOP/s | MFU {row['mfu']:.1%} of measured fp32 peak "
      f"{peak['peak_flops'] / 1e9:.1f} GFLOP/s"
    )

  def plot(ax):
    ax.bar([r["size"] for r in rows], [100 * r["mfu"] for r in rows], color="tab:blue")
    ax.set_ylabel("model FLOPs / measured matmul peak (%)")
    ax.set_title("BERT MLM train step (fwd+bwd+AdamW), fp32")

  path = common.write_results("core_train_step_mfu", dict(matmul_peak=peak, rows=rows), plot)
  print(f"wrote {path}, {path.with_suffix('.png')}")


if __name__ == "__main__":
  main()
