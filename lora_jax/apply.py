"""The factored LoRA forward of an unmodified Flax Linen model, for one adapter or a different adapter per row.

LoRA, Hu et al. 2021, arXiv 2106.09685 §4.1 Eq. 3: h = W₀x + ΔWx = W₀x + s·BAx, here y = base(x) + s·((drop(x) @ A) @ B)
in Flax's x @ W layout; ΔW is never formed. Mixed batches gather each row's (A, B) by adapter id and run one batched
product (BGMV, as Punica / S-LoRA serve many adapters; peft loops over sub-batches instead). US 2022/0383126 claim 1,
step 2 (the first domain model f(x) = W₀x + BAx) and its description (many adapters over one shared base in memory).

How the model is reached: `flax.linen.intercept_methods` wraps every `__call__` of nn.Dense, nn.DenseGeneral,
nn.Einsum, nn.Conv and nn.Embed, and nn.Embed.attend. An intercepted module whose param path ('/'.join(module.path)
+ '/kernel' or '/embedding') has adapters gets the low-rank term added to its output; every other call runs as is.
So the model's code is untouched, and a model must apply those modules (a layer that reads a raw kernel param and
multiplies by hand is invisible; `core.attention.MultiHeadAttention` therefore uses nn.Dense). Lifted transforms
that stack layer params (nn.scan, nn.vmap) are not supported.

Per module (A, B as stored by `lora_jax.lora`; kernel axes split by the spec's in_axes):
  Dense, DenseGeneral (over its `axis`), Einsum (first in_axes kernel letters contracted): (x·A)·B.
  Conv: a conv with the module's strides/padding/dilation and kernel A.reshape(kh, kw, cin, r), then @ B.
  Embed __call__: rows of A gathered by id, @ B. Embed.attend: x@Eᵀ + s·(x@Bᵀ)@Aᵀ.
Dropout (rate spec.dropout) acts on the branch input only, draws from the rng stream 'lora_dropout' and is active
when deterministic=False; the embedding lookup branch (integer ids) has none, as loralib's Embedding.
"""

from __future__ import annotations

import inspect
import math
import string
import threading
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from core import dropout as dropout_lib
from lora_jax import lora as lora_lib
from lora_jax.spec import LoraSpec

Array = jax.Array
_SUPPORTED = (nn.Dense, nn.DenseGeneral, nn.Einsum, nn.Conv, nn.Embed)
_BRANCH = threading.local()  # set while a branch runs its own Conv clone: that call must not be intercepted


class _Run:
  """What one apply call adapts: {path: (A, B)}, the spec, the mixed-batch ids (or None), dropout on/off."""

  def __init__(self, lora_params: Any, spec: LoraSpec, ids_B: Array | None, dropout: bool):
    self.adapters = lora_lib.adapters(lora_params)
    self.spec, self.ids_B, self.dropout = spec, ids_B, dropout
    self.reached: set[str] = set()


def _in_axes_error(path: str, kind: str, module_axes: int, spec_axes: int, spec: LoraSpec) -> ValueError:
  pattern = spec.rule(path).pattern
  return ValueError(f"lora_jax.apply: {path} is an {kind} with {module_axes} input axes, but pattern {pattern!r} "
                    f"factors {spec_axes}; set in_axes={module_axes} for it in LoraSpec.targets")


def _n_in(path: str, kernel_shape: tuple[int, ...], spec: LoraSpec) -> int:
  in_shape, _ = lora_lib.factor_shapes(path, kernel_shape, spec.rule(path))
  return len(in_shape)


def _branch(module: nn.Module, method: str, path: str, args: tuple, kwargs: dict, a: Array, b: Array,
            kernel_shape: tuple[int, ...], spec: LoraSpec, dropout_key: Array | None) -> Array:
  """The unscaled low-rank term for one adapter: (x·A)·B in the module's geometry."""
  r = a.shape[-1]
  x = args[0] if args else kwargs.get("inputs", kwargs.get("query"))
  if isinstance(module, nn.Embed):
    if method == "attend":
      x, a, b = nn.dtypes.promote_dtype(x, a, b, dtype=module.dtype)
      if dropout_key is not None:
        x = dropout_lib.dropout(x, spec.dropout, dropout_key)
      return jnp.dot(jnp.dot(x, b.T), a.T)
    a, b = nn.dtypes.promote_dtype(a, b, dtype=module.dtype)
    return jnp.dot(jnp.take(a, x, axis=0), b)

  n_in = _n_in(path, kernel_shape, spec)
  in_shape, out_shape = kernel_shape[:n_in], kernel_shape[n_in:]
  x, a, b = nn.dtypes.promote_dtype(x, a, b, dtype=module.dtype)
  if dropout_key is not None:
    x = dropout_lib.dropout(x, spec.dropout, dropout_key)
  precision = getattr(module, "precision", None)
  if isinstance(module, nn.Conv):
    if module.feature_group_count != 1 or module.mask is not None:
      raise ValueError(f"lora_jax.apply: {path}: nn.Conv with feature_group_count != 1 or a mask is not supported")
    if n_in != len(kernel_shape) - 1:
      raise _in_axes_error(path, "nn.Conv", len(kernel_shape) - 1, n_in, spec)
    low_rank = module.clone(parent=None, features=r, use_bias=False)
    _BRANCH.active = True
    try:
      t = low_rank.apply({"params": {"kernel": a.reshape(in_shape + (r,))}}, x)
    finally:
      _BRANCH.active = False
    return jnp.dot(t, b, precision=precision)
  if isinstance(module, nn.Einsum):
    eq = (args[1] if len(args) > 1 else kwargs.get("einsum_str") or module.einsum_str).replace(" ", "")
    (lhs, rhs), out = eq.split("->")[0].split(","), eq.split("->")[1]
    k_in, k_out = rhs[:n_in], rhs[n_in:]
    if "." in eq or any(c not in lhs or c in out for c in k_in) or any(c in lhs or c not in out for c in k_out):
      raise ValueError(f"lora_jax.apply: {path}: nn.Einsum {eq!r} kernel axes are not [{n_in} contracted, then output "
                       f"axes]; set in_axes for its pattern or reorder the kernel")
    rank = next(c for c in string.ascii_letters if c not in eq)
    mid = "".join(c for c in lhs if c not in k_in)
    t = jnp.einsum(f"{lhs},{k_in}{rank}->{mid}{rank}", x, a.reshape(in_shape + (r,)), precision=precision)
    return jnp.einsum(f"{mid}{rank},{rank}{k_out}->{out}", t, b.reshape((r,) + out_shape), precision=precision)
  if isinstance(module, nn.DenseGeneral):
    axis = module.axis if isinstance(module.axis, tuple) else (module.axis,)
    axis = tuple(ax % x.ndim for ax in axis)
    if module.batch_dims:
      raise ValueError(f"lora_jax.apply: {path}: nn.DenseGeneral with batch_dims is not supported")
    if len(axis) != n_in:
      raise _in_axes_error(path, "nn.DenseGeneral", len(axis), n_in, spec)
    dims = ((axis, tuple(range(n_in))), ((), ()))
    t = jax.lax.dot_general(x, a.reshape(in_shape + (r,)), dims, precision=precision)
    return jnp.tensordot(t, b.reshape((r,) + out_shape), axes=1, precision=precision)
  if n_in != 1:  # nn.Dense
    raise _in_axes_error(path, "nn.Dense", 1, n_in, spec)
  # On tokens flattened to rows: the same products, but autodiff's dB = (x·A)ᵀ·g is then a plain 2-D matmul. On the
  # [B, L, ·] arrays XLA:CPU computed it over a transposed copy of g, re-fusing the GELU derivative into that copy:
  # 44 of 143 ms of a one-layer backward with adapters on the 384 → 1536 intermediate, 81 ms without it
  # (benchmarks/lora/profile_step.py; results/lora_profile_intermediate_781e9a2.json, ...intermediate.json).
  x_NxI = x.reshape(-1, x.shape[-1])
  low_rank_NxO = jnp.dot(jnp.dot(x_NxI, a, precision=precision), b, precision=precision)
  return low_rank_NxO.reshape(x.shape[:-1] + b.shape[-1:])


def _interceptor(run: _Run) -> Callable[..., Any]:
  def intercept(next_fun, args, kwargs, context):
    module, method = context.module, context.method_name
    if (getattr(_BRANCH, "active", False) or not isinstance(module, _SUPPORTED)
        or method not in ("__call__", "attend") or (method == "attend" and not isinstance(module, nn.Embed))):
      return next_fun(*args, **kwargs)
    name = "embedding" if isinstance(module, nn.Embed) else "kernel"
    path = "/".join(tuple(module.path) + (name,))
    if path not in run.adapters:
      return next_fun(*args, **kwargs)
    y = next_fun(*args, **kwargs)
    kernel_shape = tuple(module.get_variable("params", name).shape)
    a, b = run.adapters[path]
    spec = run.spec
    if spec.rule(path) is None:
      raise ValueError(f"lora_jax.apply: adapter {path} is not matched by the spec's targets {spec.patterns()}")
    if run.ids_B is None:
      _check_factors(path, a, b, kernel_shape)
      key = module.make_rng("lora_dropout") if run.dropout and spec.dropout > 0 else None
      low_rank = _branch(module, method, path, args, kwargs, a, b, kernel_shape, spec, key)
    else:
      _check_factors(path, a[0], b[0], kernel_shape)
      low_rank = _mixed_branch(module, method, path, args, kwargs, a, b, kernel_shape, spec, run.ids_B)
    run.reached.add(path)
    return y + (spec.scaling(path) * low_rank).astype(y.dtype)

  return intercept


def _check_factors(path: str, a: Array, b: Array, kernel_shape: tuple[int, ...]) -> None:
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0] or a.shape[0] * b.shape[1] != math.prod(kernel_shape):
    raise ValueError(f"lora_jax.apply: adapter {path}: lora_a {tuple(a.shape)} @ lora_b {tuple(b.shape)} does not "
                     f"factor the model's kernel {kernel_shape} (adapters for another base?)")


def _mixed_branch(module, method, path, args, kwargs, a_KxIxR, b_KxRxO, kernel_shape, spec, ids_B) -> Array:
  """Row b's low-rank term with adapter ids_B[b] (id -1: B = 0, i.e. the base): gather, then one batched product."""
  x = args[0] if args else kwargs.get("inputs", kwargs.get("query"))
  rows = ids_B.shape[0]
  if x.shape[:1] not in ((rows,), (1,)):
    raise ValueError(f"lora_jax.apply_mixed: {path} input has leading axis {x.shape[:1]}, the batch has {rows} rows "
                     f"(mixed batches need the batch axis first in every adapted module's input)")
  safe_B = jnp.maximum(ids_B, 0)
  a_BxIxR = a_KxIxR[safe_B]
  b_BxRxO = jnp.where((ids_B >= 0)[:, None, None], b_KxRxO[safe_B], jnp.zeros((), b_KxRxO.dtype))
  rest = args[1:] if args else ()
  kw = {k: v for k, v in kwargs.items() if k not in ("inputs", "query")}

  def row(x_row, a_row, b_row):
    return _branch(module, method, path, (x_row[None],) + rest, kw, a_row, b_row, kernel_shape, spec, None)[0]

  return jax.vmap(row, in_axes=(0 if x.shape[0] == rows else None, 0, 0))(x if x.shape[0] == rows else x[0],
                                                                          a_BxIxR, b_BxRxO)


def _forward_deterministic(model: nn.Module, method: Any) -> bool:
  fn = getattr(model, method) if isinstance(method, str) else (method or type(model).__call__)
  try:
    return "deterministic" in inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return False


def _run(model, params, run: _Run, args, rngs, method, kwargs, what: str):
  with nn.intercept_methods(_interceptor(run)):
    out = model.apply({"params": params}, *args, rngs=rngs, method=method, **kwargs)
  if run.adapters and not run.reached:
    raise ValueError(f"{what}: no adapted module was called (adapters for {next(iter(run.adapters))}, ...); the "
                     f"model must apply nn.Dense/DenseGeneral/Einsum/Conv/Embed modules at those paths")
  return out


def apply(model: nn.Module, params: Any, lora_params: Any, spec: LoraSpec, *args: Any, rngs: Any = None,
          deterministic: bool = True, method: Any = None, **kwargs: Any) -> Any:
  """`model.apply({'params': params}, *args, **kwargs)` with y = base(x) + s·(drop(x)·A)·B at every adapted module
  (Hu et al. 2021 §4.1 Eq. 3), the model's code untouched (see the module docstring).

  Args:
    model, params: the base Linen module and its (frozen) params.
    lora_params, spec: adapters from `lora_jax.init` (trainable: differentiate w.r.t. them) and their spec (static
      under jit: it is hashable).
    rngs: rng streams for model.apply; LoRA dropout draws from 'lora_dropout'.
    deterministic: False turns LoRA dropout on (spec.dropout > 0); also passed to the model when its method takes a
      `deterministic` argument, so one flag drives both dropouts.
    method: as in `model.apply`.
  """
  dropout = not deterministic and spec.dropout > 0
  if dropout and (not isinstance(rngs, dict) or "lora_dropout" not in rngs):
    raise ValueError("lora_jax.apply: deterministic=False with LoraSpec.dropout > 0 needs rngs={'lora_dropout': key}")
  if _forward_deterministic(model, method):
    kwargs["deterministic"] = deterministic
  run = _Run(lora_params, spec, None, dropout)
  return _run(model, params, run, args, rngs, method, kwargs, "lora_jax.apply")


def apply_mixed(model: nn.Module, params: Any, stacked: Any, adapter_ids_B: Array, spec: LoraSpec, *args: Any,
                rngs: Any = None, method: Any = None, **kwargs: Any) -> Any:
  """One forward in which batch row b uses adapter adapter_ids_B[b] of `stacked` (`lora_jax.stack`); id -1 = base.

  Row b gathers A[ids[b]], B[ids[b]] and the branch runs as one batched product over rows (BGMV), so a batch of
  many adapters costs one call; each row equals `apply` with that adapter alone. Inference only: LoRA dropout is
  off. Every adapted module's input must have the batch axis first (or a broadcast axis of 1). Ids must lie in
  [-1, K); concrete ids are checked, traced ones are clipped.
  """
  ids_B = jnp.asarray(adapter_ids_B)
  if ids_B.ndim != 1 or not jnp.issubdtype(ids_B.dtype, jnp.integer):
    raise ValueError(f"lora_jax.apply_mixed: adapter_ids_B must be a 1-d int array, got {ids_B.dtype}{ids_B.shape}")
  pairs = lora_lib.adapters(stacked)
  if any(a.ndim != 3 or b.ndim != 3 for a, b in pairs.values()):
    raise ValueError("lora_jax.apply_mixed: expects adapters stacked by lora_jax.stack (A [K, I, r], B [K, r, O])")
  num = next(iter(pairs.values()))[0].shape[0] if pairs else 0
  if not isinstance(adapter_ids_B, jax.core.Tracer):
    ids_np = np.asarray(adapter_ids_B)
    if ids_np.size and (ids_np.min() < -1 or ids_np.max() >= num):
      raise ValueError(f"lora_jax.apply_mixed: adapter ids must be in [-1, {num}), got {sorted(set(ids_np.tolist()))}")
  ids_B = jnp.minimum(ids_B, num - 1)
  run = _Run(stacked, spec, ids_B, False)
  return _run(model, params, run, args, rngs, method, kwargs, "lora_jax.apply_mixed")
