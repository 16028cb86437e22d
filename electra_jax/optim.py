"""Adam without bias correction: the update rule of ELECTRA's (and BERT's) `AdamWeightDecayOptimizer`.

Clark et al. 2020, Appendix A / Table 6 (Adam, β = (0.9, 0.999), ε = 1e-6, weight decay 0.01, linear warmup 10k
steps times linear decay); reference code `model/optimization.py`:

  m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²;  u = m / (√v + ε) [+ wd·θ unless LayerNorm/bias];  θ ← θ − lr·u

with no m̂ = m / (1 − β1ᵗ) correction, which optax's `adam`/`adamw` always apply (richarddwang/electra_pytorch lists
this among the details needed for parity). The rest of the optimizer (global-norm clip 1.0, decoupled decay with the
LayerNorm/bias mask, the 'warmup_times_linear' schedule lr·min(1, t/W)·(1 − t/T)) is `core.optim.make_optimizer`;
pass `scale_by=scale_by_adam_no_bias_correction(...)` through `core.train.Task(scale_by=...)`. Not a patent step
(the patent leaves the optimizer open).

Short runs beware: with a steady gradient, m_t ≈ (1 − β1ᵗ)·g and v_t ≈ (1 − β2ᵗ)·g², so the update is
(1 − β1ᵗ)/√(1 − β2ᵗ) times the bias-corrected one: 3.2× at step 100, 1.96× at 300, 1.26× at 1,000. The paper's
10k-step warm-up hides this; a CPU run of a few hundred steps trains at 2-3× its nominal LR.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def scale_by_adam_no_bias_correction(
  b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6
) -> optax.GradientTransformation:
  """u = m / (√v + ε) with the raw first and second moments (no bias correction); moments in fp32.

  The state is optax's `ScaleByAdamState(count, mu, nu)`, so tooling that inspects Adam states keeps working.
  """

  def init_fn(params):
    zeros = lambda p: jnp.zeros(jnp.shape(p), jnp.float32)
    return optax.ScaleByAdamState(
      count=jnp.zeros([], jnp.int32), mu=jax.tree.map(zeros, params), nu=jax.tree.map(zeros, params)
    )

  def update_fn(updates, state, params=None):
    del params
    mu = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g.astype(jnp.float32), state.mu, updates)
    nu = jax.tree.map(lambda v, g: b2 * v + (1.0 - b2) * jnp.square(g.astype(jnp.float32)), state.nu, updates)
    scaled = jax.tree.map(lambda m, v, g: (m / (jnp.sqrt(v) + eps)).astype(g.dtype), mu, nu, updates)
    count = optax.safe_increment(state.count)
    return scaled, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

  return optax.GradientTransformation(init_fn, update_fn)
