"""ELECTRA's optimizer: Adam without bias correction + decay mask + clipping + warmup × linear decay (electra.md §4)."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from core import optim as core_optim
from electra_jax import optim
from tests.helpers import REPO, load_config

PEAK, WARMUP, TOTAL, WD, CLIP, B1, B2, EPS = 1e-2, 3, 10, 0.01, 1.0, 0.9, 0.999, 1e-6


def _reference_adam_weight_decay(params, grads_per_step):
  """numpy transcription of google-research/electra model/optimization.py (AdamWeightDecayOptimizer + create_optimizer):
  clip_by_global_norm(1.0); m, v without bias correction; update = m / (sqrt(v) + eps) + wd * param unless the name
  contains LayerNorm / layer_norm / bias; lr = peak * (1 - t / T) * min(1, t / W) at global_step t (before the +1)."""
  params = {k: v.astype(np.float64) for k, v in params.items()}
  m = {k: np.zeros_like(v) for k, v in params.items()}
  v = {k: np.zeros_like(x) for k, x in params.items()}
  for t, grads in enumerate(grads_per_step):
    norm = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads.values()))
    scale = CLIP / max(norm, CLIP)
    lr = PEAK * (1.0 - t / TOTAL) * min(1.0, t / WARMUP)
    for name in params:
      g = grads[name] * scale
      m[name] = B1 * m[name] + (1 - B1) * g
      v[name] = B2 * v[name] + (1 - B2) * g * g
      update = m[name] / (np.sqrt(v[name]) + EPS)
      if not any(tag in name for tag in ("LayerNorm", "layer_norm", "bias")):
        update = update + WD * params[name]
      params[name] = params[name] - lr * update
  return params


def _nest(flat):
  tree = {}
  for name, value in flat.items():
    *parents, leaf = name.split("/")
    node = tree
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


def test_no_bias_correction_adam_matches_the_reference_update():
  rng = np.random.default_rng(0)
  shapes = {
    "layer_0/intermediate/kernel": (3, 4),
    "layer_0/intermediate/bias": (4,),
    "layer_0/output_layer_norm/scale": (4,),
    "layer_0/output_layer_norm/bias": (4,),
    "embeddings/word_embeddings/embedding": (5, 3),
  }
  params = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
  # Large gradients on some steps so the global-norm clip is active.
  steps = [
    {k: (rng.normal(size=s) * (3.0 if t % 2 else 0.1)).astype(np.float32) for k, s in shapes.items()} for t in range(7)
  ]
  expected = _reference_adam_weight_decay(params, steps)

  opt = ml_collections.ConfigDict(
    dict(
      name="adamw", peak_lr=PEAK, schedule="warmup_times_linear", warmup_steps=WARMUP, end_lr_fraction=0.0,
      weight_decay=WD, b1=B1, b2=B2, eps=EPS, clip_norm=CLIP,
    )
  )  # fmt: skip
  tx, _ = core_optim.make_optimizer(opt, TOTAL, scale_by=optim.scale_by_adam_no_bias_correction(B1, B2, EPS))
  tree = _nest({k: jnp.asarray(v) for k, v in params.items()})
  state = tx.init(tree)
  update = jax.jit(tx.update)
  for grads in steps:
    updates, state = update(_nest({k: jnp.asarray(g) for k, g in grads.items()}), state, tree)
    tree = optax.apply_updates(tree, updates)
  ours = {
    jax.tree_util.keystr(p, simple=True, separator="/"): np.asarray(x)
    for p, x in jax.tree_util.tree_leaves_with_path(tree)
  }
  for name in shapes:
    np.testing.assert_allclose(ours[name], expected[name], rtol=2e-5, atol=1e-7, err_msg=name)

  # optax's bias-corrected Adam gives a visibly different trajectory (why the custom transformation exists).
  corrected, _ = core_optim.make_optimizer(opt, TOTAL)
  tree_c = _nest({k: jnp.asarray(v) for k, v in params.items()})
  state_c = corrected.init(tree_c)
  for grads in steps:
    updates, state_c = corrected.update(_nest({k: jnp.asarray(g) for k, g in grads.items()}), state_c, tree_c)
    tree_c = optax.apply_updates(tree_c, updates)
  kernel_c = np.asarray(tree_c["layer_0"]["intermediate"]["kernel"])
  assert np.abs(kernel_c - expected["layer_0/intermediate/kernel"]).max() > 1e-3


def test_small_schedule_is_peak_times_warmup_times_linear_decay():
  config = load_config(os.path.join(REPO, "configs/electra/small.py"), None, {})
  schedule = core_optim.make_schedule(config.optimizer, config.train.total_steps)
  for t in (0, 1, 5_000, 10_000, 10_001, 500_000, 999_999, 1_000_000):
    expected = 5e-4 * min(1.0, t / 10_000) * (1.0 - t / 1_000_000)
    np.testing.assert_allclose(float(schedule(t)), expected, rtol=1e-5, atol=5e-10)  # fp32 t / T near T
  assert config.optimizer.bias_correction is False and config.optimizer.clip_norm == 1.0
  assert (config.optimizer.b1, config.optimizer.b2, config.optimizer.eps, config.optimizer.weight_decay) == (
    0.9,
    0.999,
    1e-6,
    0.01,
  )
