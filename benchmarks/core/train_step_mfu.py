"""Model FLOPs utilisation of a BERT MLM training step (core.train step: fwd + bwd + AdamW) vs measured matmul peak.

Model FLOPs count the matmuls only (the PaLM/Chinchilla convention): per token, forward = 2·(dense params touched)
+ 4·L·H per layer for QKᵀ and AV, plus the tied MLM head over all positions (E·V); training = 3 × forward.

  python -m benchmarks.core.train_step_mfu [--sizes tiny,small] [--steps 10]
"""

from __future__ import annotations

import argparse
import statistics

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.core import common
from core import bert as bert_lib
from core import mlm, optim
from core import train as train_lib

SHAPES = {  # hidden, layers, heads, ffn, embedding, batch, seq_len
  "tiny": (64, 2, 2, 256, 64, 16, 64),
  "small": (256, 12, 4, 1024, 128, 32, 128),  # BERT-Small / ELECTRA-Small discriminator shape
}


def train_flops_per_step(config: bert_lib.BertConfig, batch: int, seq_len: int) -> float:
  h, f, e, v, n = config.hidden_size, config.intermediate_size, config.emb_size, config.vocab_size, config.num_layers
  per_layer = 2 * (4 * h * h + 2 * h * f) + 4 * seq_len * h  # QKVO + FFN, then QKᵀ and AV
  projection = 2 * e * h if e != h else 0
  head = 2 * (h * e + e * v)  # dense H->E and tied logits E->V
  forward_per_token = n * per_layer + projection + head
  return 3.0 * forward_per_token * batch * seq_len


def measure(size: str, steps: int) -> dict:
  hidden, layers, heads, ffn, emb, batch, seq_len = SHAPES[size]
  config = bert_lib.BertConfig(
    vocab_size=30522,
    hidden_size=hidden,
    num_layers=layers,
    num_heads=heads,
    intermediate_size=ffn,
    embedding_size=emb,
    max_position_embeddings=512,
  )
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

  opt = optim.default_config()
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
  flops = train_flops_per_step(config, batch, seq_len)
  return dict(
    size=size,
    hidden=hidden,
    layers=layers,
    heads=heads,
    ffn=ffn,
    embedding=emb,
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
  peak = common.measure_matmul_peak()
  rows = []
  for size in args.sizes.split(","):
    row = measure(size, args.steps)
    row["mfu"] = row["model_flops_per_s"] / peak["peak_flops"]
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
