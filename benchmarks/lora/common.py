"""What the LoRA benchmarks share: a MiniLM-shape classifier, random batches, adapters, timing, compiled train steps.

The model is a BERT-family classifier of the bundled MiniLM-L6's shape (6 x 384, random init: timing does not
depend on the weights). A training step is AdamW on the gradient of the classification loss: w.r.t. every parameter
(full finetuning) or w.r.t. the adapters + the head with the encoder passed frozen (LoRA, Hu et al. 2021 §4.2: no
gradient and no optimizer state for the frozen weights).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lora_jax
from benchmarks.core import common
from core import bert as bert_lib
from core.finetune import heads
from lora_jax.registry import Registry

TARGETS = r"encoder/layer_\d+/attention/(query|value)/kernel"  # the paper's choice (§7.1)
ALL_LINEAR = r"encoder/layer_\d+/(attention/(query|key|value|out)|intermediate|output)/kernel"  # QLoRA's


def int_list(text: str) -> list[int]:
  """argparse type: '1,2,4' -> [1, 2, 4]."""
  return [int(v) for v in text.split(",")]


def minilm_shape_classifier(num_layers: int = 6, seed: int = 0):
  """(model, params): a 2-class BERT classifier of MiniLM-L6's shape (`num_layers` x 384), random init."""
  config = bert_lib.BertConfig(hidden_size=384, num_layers=num_layers, num_heads=12, intermediate_size=1536)
  model = heads.FinetuneModel(config, "classification", 2, head_dropout_rate=0.0)
  ids = jnp.ones((1, 8), jnp.int32)
  params = jax.jit(model.init)(jax.random.key(seed), ids, jnp.zeros_like(ids), ids)["params"]
  return model, params


def random_batch(rng: np.random.Generator, rows: int, length: int):
  """(ids, types, mask) of `rows` x `length` random word-piece ids, every token attended."""
  ids = jnp.asarray(rng.integers(1000, 30000, (rows, length)), jnp.int32)
  return ids, jnp.zeros_like(ids), jnp.ones_like(ids)


def trained_adapter(params, spec: lora_jax.LoraSpec, seed: int = 1):
  """An adapter with non-zero B (as after training), so that the low-rank branch does real work."""
  return jax.tree.map(lambda x: x + 0.01, lora_jax.init(jax.random.key(seed), params, spec))


def adapter_registry(model, params, n_adapters: int, rank: int = 8):
  """(registry, adapters, spec): `n_adapters` distinct q/v adapters, registered as task0, task1, ..."""
  spec = lora_jax.LoraSpec(TARGETS, rank=rank, alpha=2.0 * rank)
  lora = trained_adapter(params, spec)
  adapters = [jax.tree.map(lambda x, k=k: x * (1.0 + 0.1 * k), lora) for k in range(n_adapters)]
  registry = Registry(model, params, spec)
  for k, adapter in enumerate(adapters):
    registry.add(f"task{k}", adapter)
  return registry, adapters, spec


def interleaved_ms(fns: dict, repeats: int) -> dict[str, float]:
  """Median ms of each function, timed in alternation (a, b, c, a, b, c, ...) so that load drift hits all alike."""
  for fn in fns.values():
    common.time_fn(fn, warmup=2, repeats=0)
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      times[name] += common.time_fn(fn, warmup=0, repeats=1)
  return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def loss_full(model, params, batch, labels):
  """Full finetuning's objective: the classification loss as a function of every parameter."""
  return heads.classification_loss(model.apply({"params": params}, *batch), labels)[0]


def loss_lora(model, spec: lora_jax.LoraSpec, trainable, frozen, batch, labels):
  """LoRA's objective: the classification loss as a function of `trainable` = {'lora', 'head'}, `frozen` the rest."""
  logits = lora_jax.apply(model, {**frozen, "head": trainable["head"]}, trainable["lora"], spec, *batch)
  return heads.classification_loss(logits, labels)[0]


def compiled_steps(model, params, specs: dict, batch, labels, tx: optax.GradientTransformation) -> dict:
  """{name: (compiled step, its arguments)} for each `specs` entry: None = full finetuning, a LoraSpec = LoRA on
  its targets + the head, the encoder frozen. Each step is compiled once (so it can be timed and cost-analysed)."""

  def make_step(loss):
    def step(trainable, state, *frozen):
      grads = jax.grad(loss)(trainable, *frozen)
      updates, state = tx.update(grads, state, trainable)
      return optax.apply_updates(trainable, updates), state

    return jax.jit(step)

  frozen = {"encoder": params["encoder"]}
  steps = {}
  for seed, (name, spec) in enumerate(specs.items(), start=1):
    if spec is None:
      args = (params, tx.init(params))
      step = make_step(lambda p: loss_full(model, p, batch, labels))
    else:
      trainable = {"lora": trained_adapter(params, spec, seed), "head": params["head"]}
      args = (trainable, tx.init(trainable), frozen)
      step = make_step(lambda t, f, spec=spec: loss_lora(model, spec, t, f, batch, labels))
    steps[name] = (step.lower(*args).compile(), args)
  return steps


def step_ms(steps: dict, repeats: int) -> dict[str, float]:
  """Median ms of each compiled step of `compiled_steps`, timed in alternation."""
  return interleaved_ms({name: (lambda c=c, a=a: c(*a)) for name, (c, a) in steps.items()}, repeats)


def plot_sweep(ax, points: list[dict], *, group: str, x: str, curves: list[tuple[str, str, str]], goal: float,
               xlabel: str, ylabel: str, title: str) -> None:
  """A sweep's ratios against `x` (log2 axis), one line per `group` value and curve; `curves` holds
  (key, matplotlib style, label with `{}` for the group value); a dashed line marks the goal."""
  for value in dict.fromkeys(p[group] for p in points):
    pts = [p for p in points if p[group] == value]
    for key, style, label in curves:
      ax.plot([p[x] for p in pts], [p[key] for p in pts], style, label=label.format(value))
  ax.axhline(goal, color="gray", lw=0.8, ls="--", label=f"goal {goal:g}")
  ax.set_xscale("log", base=2)
  ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
  ax.legend(fontsize=7)
