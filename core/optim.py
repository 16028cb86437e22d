"""Optimizer factory from a config: optax chains with schedules, clipping and a LayerNorm/bias-free decay mask.

`config.optimizer` fields (schema, defaults and checks: `core.config.default_optimizer` / `validate_optimizer`):
name (adamw | adam | sgd | lamb), peak_lr, schedule, warmup_steps, end_lr_fraction, weight_decay, b1, b2, eps,
clip_norm. Schedules:

- `constant`: peak after linear warmup.
- `warmup_linear`: linear warmup to peak, then linear decay to `end_lr_fraction`·peak at `total_steps` (BERT).
- `warmup_cosine`: linear warmup, cosine decay to `end_lr_fraction`·peak.
- `warmup_times_linear`: peak·min(1, t/W)·(1 − t/T), warmup and decay *multiplied* (ELECTRA's reference code).

Methods that need a different scaling rule (e.g. Adam without bias correction) pass `scale_by=` and keep the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from core import config as config_lib
from core import tree as tree_lib

_NO_DECAY_NAMES = ("layernorm", "layer_norm", "ln_", "norm")


def make_schedule(opt: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  peak, warmup = float(opt.peak_lr), int(opt.warmup_steps)
  end = peak * float(opt.end_lr_fraction)
  if opt.schedule == "constant":
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), optax.constant_schedule(peak)], [warmup])
  if opt.schedule == "warmup_linear":
    return optax.join_schedules(
      [optax.linear_schedule(0.0, peak, warmup), optax.linear_schedule(peak, end, max(1, total_steps - warmup))],
      [warmup],
    )
  if opt.schedule == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total_steps, warmup + 1), end_value=end)
  if opt.schedule == "warmup_times_linear":

    def schedule(step):
      t = jnp.asarray(step, jnp.float32)
      warm = jnp.minimum(1.0, t / warmup) if warmup > 0 else 1.0
      decay = jnp.maximum(0.0, 1.0 - t / total_steps)
      return peak * warm * (end / peak + (1.0 - end / peak) * decay)

    return schedule
  allowed = ", ".join(config_lib.SCHEDULES)
  raise config_lib.ConfigError(f"optimizer.schedule: unknown value {opt.schedule!r} (allowed: {allowed})")


def decay_mask(params: Any) -> Any:
  """True where weight decay applies: every weight matrix/table, never biases or LayerNorm parameters."""

  def wants_decay(path: str, leaf: Any) -> bool:
    names = path.lower().split("/")
    if names[-1] in ("bias", "scale"):
      return False
    return not any(tag in name for name in names for tag in _NO_DECAY_NAMES) and jnp.ndim(leaf) > 1

  return tree_lib.map_with_path_str(wants_decay, params)


def make_optimizer(
  opt: ml_collections.ConfigDict,
  total_steps: int,
  *,
  scale_by: optax.GradientTransformation | None = None,
  mask_fn=decay_mask,
  lr_multipliers: Callable[[Any], Any] | None = None,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Returns (tx, schedule): clip → scale (Adam/LAMB/...) → decoupled weight decay → −lr(t) [· per-param factor].

  `lr_multipliers(params)` returns a tree of floats shaped like params (e.g. layer-wise LR decay for finetuning).
  """
  schedule = make_schedule(opt, total_steps)
  if scale_by is None:
    if opt.name in ("adamw", "adam", "lamb"):  # LAMB = Adam moments + the trust ratio below
      scale_by = optax.scale_by_adam(b1=opt.b1, b2=opt.b2, eps=opt.eps)
    elif opt.name == "sgd":
      scale_by = optax.trace(decay=opt.b1)
    else:
      allowed = ", ".join(config_lib.OPTIMIZERS)
      raise config_lib.ConfigError(f"optimizer.name: unknown value {opt.name!r} (allowed: {allowed})")
  parts = []
  if opt.clip_norm > 0:
    parts.append(optax.clip_by_global_norm(opt.clip_norm))
  parts.append(scale_by)
  if opt.weight_decay > 0 and opt.name != "adam":
    parts.append(optax.add_decayed_weights(opt.weight_decay, mask=mask_fn))
  if opt.name == "lamb":
    parts.append(optax.scale_by_trust_ratio())
  parts.append(optax.scale_by_learning_rate(schedule))
  if lr_multipliers is not None:
    parts.append(scale_by_tree(lr_multipliers))
  return optax.chain(*parts), schedule


def scale_by_tree(multipliers_fn: Callable[[Any], Any]) -> optax.GradientTransformation:
  """Multiplies each update leaf by its entry of `multipliers_fn(params)`: a float, or a schedule step -> float
  (e.g. 0 for the first N steps, then 1: a part of the model that waits while another warms up). With any
  schedule the state counts steps (optax's ScaleByScheduleState); with constants only it is empty."""

  def has_schedule(params) -> bool:
    return any(callable(f) for f in jax.tree.leaves(multipliers_fn(params)))

  def init_fn(params):
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32)) if has_schedule(params) else optax.EmptyState()

  def update_fn(updates, state, params=None):
    factors = multipliers_fn(updates if params is None else params)
    count = state.count if isinstance(state, optax.ScaleByScheduleState) else None  # (a tuple has .count too)

    def scale(u, f):
      return u * jnp.asarray(f(count) if callable(f) else f, u.dtype)

    updates = jax.tree.map(scale, updates, factors)
    if count is not None:
      state = optax.ScaleByScheduleState(count=optax.safe_increment(count))
    return updates, state

  return optax.GradientTransformation(init_fn, update_fn)
