"""ELECTRA discriminator training step: ours (jit, fp32) vs HuggingFace transformers in PyTorch, same box, same run.

Both sides do forward + backward + AdamW update of the ELECTRA discriminator (BERT encoder with E->H projection and
the dense-GELU-dense(1) replaced-token head, sigmoid loss over all tokens) at the same shapes, batch and sequence
length; tokens/s are medians over repeated steps after warm-up. Also reports our step's model-FLOPs utilisation
against the fp32 matmul peak measured in the same run.

  python -m benchmarks.electra.step_vs_torch [--size small] [--batch 32] [--seq_len 128] [--steps 8]
"""

from __future__ import annotations

import argparse
import os
import statistics

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.core import common
from configs.electra import common as electra_configs
from core import bert as bert_lib
from core import flops as core_flops
from electra_jax import flops as electra_flops
from electra_jax import model as model_lib
from electra_jax import objective


def _batch(batch: int, seq_len: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(1000, 30000, (batch, seq_len)).astype(np.int32)
  ids[:, 0], ids[:, -1] = 101, 102
  labels = (rng.random((batch, seq_len)) < 0.15).astype(np.int32)
  return ids, labels


def ours_tokens_per_s(disc_config, batch: int, seq_len: int, steps: int) -> tuple[float, float]:
  """Median seconds per step and tokens/s of our jitted discriminator step (fwd + bwd + AdamW)."""
  full = model_lib.init_params(jax.random.key(0), disc_config, model_lib.generator_config(disc_config, 0.25), seq_len)
  params = {"embeddings": full["embeddings"], "discriminator": full["discriminator"]}  # the discriminator only
  tx = optax.adamw(1e-4, weight_decay=0.01)
  ids, labels = _batch(batch, seq_len)
  ids, labels, mask = jnp.asarray(ids), jnp.asarray(labels), jnp.ones((batch, seq_len), jnp.int32)

  def loss_fn(p):
    logits_BxL = model_lib.discriminator_logits(
      p, disc_config, ids, None, mask, deterministic=False, dropout_key=jax.random.key(1)
    )
    return objective.discriminator_loss(logits_BxL, labels, mask)

  @jax.jit
  def step(p, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  holder = {"state": (params, tx.init(params))}

  def one():
    p, s, loss = step(*holder["state"])
    holder["state"] = (p, s)
    return loss

  times = common.time_fn(one, warmup=2, repeats=steps)
  median = statistics.median(times)
  return median, batch * seq_len / median


def torch_tokens_per_s(disc_config: bert_lib.BertConfig, batch: int, seq_len: int, steps: int) -> tuple[float, float]:
  """The same step in HuggingFace transformers' ElectraForPreTraining (eager PyTorch)."""
  import torch
  from transformers import ElectraConfig, ElectraForPreTraining

  torch.manual_seed(0)
  config = ElectraConfig(
    vocab_size=disc_config.vocab_size,
    embedding_size=disc_config.emb_size,
    hidden_size=disc_config.hidden_size,
    num_hidden_layers=disc_config.num_layers,
    num_attention_heads=disc_config.num_heads,
    intermediate_size=disc_config.intermediate_size,
    max_position_embeddings=disc_config.max_position_embeddings,
  )
  model = ElectraForPreTraining(config).train()
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
  ids, labels = _batch(batch, seq_len)
  ids, labels = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(labels.astype(np.int64))
  mask = torch.ones_like(ids)

  def one():
    optimizer.zero_grad(set_to_none=True)
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    optimizer.step()

  times = common.time_fn(one, warmup=2, repeats=steps)  # torch runs eagerly: timings are synchronous
  median = statistics.median(times)
  return median, batch * seq_len / median


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", default="small", choices=sorted(electra_configs.SIZES))
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--seq_len", type=int, default=128)
  parser.add_argument("--steps", type=int, default=8)
  args = parser.parse_args()
  import torch

  torch.set_num_threads(max(1, os.cpu_count() or 1))
  disc_config = bert_lib.from_model_section(electra_configs.model(args.size)).validate()
  peak = common.measure_matmul_peak((1024, 2048), repeats=3)
  ours_s, ours_tps = ours_tokens_per_s(disc_config, args.batch, args.seq_len, args.steps)
  torch_s, torch_tps = torch_tokens_per_s(disc_config, args.batch, args.seq_len, args.steps)
  # Model FLOPs of fwd + bwd (= 3 x forward): E->H projection, per layer QKVO + FFN + QKᵀ + AV, the head.
  shape = core_flops.TransformerShape.from_bert_config(disc_config, args.seq_len)
  model_flops = electra_flops.discriminator_train_flops(shape, args.batch, backward_factor=2.0, matmul_only=True)
  mfu = core_flops.mfu(model_flops, ours_s, peak["peak_flops"])
  ratio = torch_s / ours_s
  print(
    f"shape B={args.batch} L={args.seq_len} H={disc_config.hidden_size} layers={disc_config.num_layers} | "
    f"ours {ours_s * 1e3:.0f} ms/step "
    f"({ours_tps:.0f} tok/s) | torch {torch.__version__} {torch_s * 1e3:.0f} ms/step ({torch_tps:.0f} tok/s) | "
    f"ratio {ratio:.2f}x (goal >= 1.3x) | MFU {mfu:.1%} of measured fp32 peak {peak['peak_flops'] / 1e9:.0f} "
    f"GFLOP/s (goal >= 50%)"
  )

  def plot(ax):
    ax.bar(["ours (JAX)", f"torch {torch.__version__}"], [ours_tps, torch_tps], color=["tab:blue", "tab:gray"])
    ax.set_ylabel("training tokens / s")
    ax.set_title(f"ELECTRA-{args.size} discriminator step, B={args.batch} L={args.seq_len}, CPU fp32")

  path = common.write_results(
    f"electra_step_vs_torch_{args.size}",
    dict(
      size=args.size,
      batch=args.batch,
      seq_len=args.seq_len,
      ours_step_s=ours_s,
      torch_step_s=torch_s,
      ours_tokens_per_s=ours_tps,
      torch_tokens_per_s=torch_tps,
      ratio=ratio,
      model_flops_per_step=model_flops,
      mfu=mfu,
      matmul_peak=peak,
      torch_version=torch.__version__,
    ),
    plot,
  )
  print(f"wrote {path}, {path.with_suffix('.png')}")


if __name__ == "__main__":
  main()
