"""Adapter trees: initialisation, merge/unmerge, stacking and exact weighted combination.

LoRA, Hu et al. 2021, arXiv 2106.09685: §4.1 (ΔW = (α/r)·BA, frozen W₀, zero-initialised factor so ΔW = 0 at step
0) and §4.2 ("no additional inference latency": W = W₀ + ΔW merged, a task switched by subtracting one ΔW and adding
another). US 2022/0383126 claim 1, steps 2-3 (a low-rank factorisation per layer is the trainable parameters, the
base weights unchanged) and its description (merging BA into W₀ for deployment; many small adapters over one base).

Conventions (this package's, stated once; `lora_jax.apply` follows the same ones):
  * The adapter tree mirrors the params tree down to each adapted leaf, which becomes {'lora_a': A, 'lora_b': B}:
    params['layer_0']['attention']['query']['kernel'] -> lora_params['layer_0']['attention']['query']['kernel'].
  * A kernel is read as the matrix W [I, O], I = prod(input axes), O = prod(output axes) (the spec's `in_axes`, see
    `lora_jax.spec`); A is [I, r], B is [r, O] (x @ W convention of Flax, the transpose of the paper's BA), and
    ΔW = s · (A @ B).reshape(kernel.shape) with s = α/r (α/√r with rslora) from the spec, not from the leaf shapes.
      nn.Dense [in, out]:           A [in, r],          B [r, out]
      nn.DenseGeneral / nn.Einsum:  A [prod(in axes), r], B [r, prod(out axes)]  (e.g. [H, N·D] for features=(N, D))
      nn.Conv [kh, kw, cin, cout]:  A [kh·kw·cin, r],    B [r, cout]   (ConvLoRA: ΔW = (A@B).reshape(kernel.shape))
      nn.Embed embedding [V, E]:    A [V, r],            B [r, E]      (lookup = rows of A, then @ B)
  * Init (loralib `layers.py`): A ~ kaiming_uniform(a=√5) = U(-1/√I, 1/√I), or N(0, (1/r)²) with init='gaussian'
    (peft's std 1/r); B = 0, so ΔW = 0 and the adapted model equals the base exactly. For embeddings the roles are
    reversed on purpose (loralib `Embedding`): A = 0, B ~ N(0, 1).
  * Adapters are float32 whatever the base dtype. Keys: typed `jax.random.key`; each leaf's key is the base key
    folded with a CRC32 of its path, so adapters do not depend on the order or number of other targets.
  * merge/unmerge compute ΔW in float32, add it to the base leaf cast to float32, and cast back to the base dtype
    once (no bf16 accumulation, peft issues #1388/#2502).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from core import tree as tree_lib
from lora_jax.spec import LoraSpec, Rule

Array = jax.Array
LORA_A, LORA_B = "lora_a", "lora_b"


def factor_shapes(path: str, kernel_shape: Sequence[int], rule: Rule) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """(input axes, output axes) of the kernel at `path` under `rule` (embedding: ((V,), (E,)))."""
  kernel_shape = tuple(kernel_shape)
  if path.rsplit("/", 1)[-1] == "embedding":
    return kernel_shape[:1], kernel_shape[1:]
  n_in = len(kernel_shape) - 1 if rule.in_axes is None else rule.in_axes
  if not 1 <= n_in < len(kernel_shape):
    raise ValueError(
      f"LoRA target {path} has kernel shape {kernel_shape}: in_axes={n_in} of pattern {rule.pattern!r} must be in "
      f"[1, {len(kernel_shape) - 1}]"
    )
  return kernel_shape[:n_in], kernel_shape[n_in:]


def adapters(lora_params: Any) -> dict[str, tuple[Array, Array]]:
  """{kernel path: (A, B)} of an adapter tree (or a stacked one), in tree order."""
  out: dict[str, tuple[Array, Array]] = {}

  def walk(node: Any, prefix: tuple[str, ...]) -> None:
    if not isinstance(node, Mapping):
      raise ValueError(f"lora_params: expected nested dicts ending in {{'lora_a', 'lora_b'}}, found {type(node)} at "
                       f"{'/'.join(prefix) or '<root>'}")
    if LORA_A in node or LORA_B in node:
      if set(node) != {LORA_A, LORA_B}:
        raise ValueError(f"lora_params: {'/'.join(prefix)} must hold exactly lora_a and lora_b, has {sorted(node)}")
      out["/".join(prefix)] = (node[LORA_A], node[LORA_B])
      return
    for k, v in node.items():
      walk(v, prefix + (str(k),))

  walk(lora_params, ())
  return out


def _tree_from(flat: Mapping[str, Any]) -> dict[str, Any]:
  """Nested dicts from {'a/b/c': leaf}."""
  root: dict[str, Any] = {}
  for path, leaf in flat.items():
    node = root
    *parents, last = path.split("/")
    for k in parents:
      node = node.setdefault(k, {})
    node[last] = leaf
  return root


def _path_key(key: Array, path: str) -> Array:
  if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.wrap_key_data(key)
  return jax.random.fold_in(key, zlib.crc32(path.encode()) & 0x7FFFFFFF)


def init(key: Array, params: Any, spec: LoraSpec) -> dict[str, Any]:
  """Adapters {'lora_a': A, 'lora_b': B} for every kernel/embedding the spec's targets match (Hu et al. §4.1; US
  2022/0383126 claim 1, step 2).

  A is kaiming-uniform (or Gaussian) and B zero, so the adapted model starts equal to the base; embeddings reversed
  (A zero, B ~ N(0, 1)). See the module docstring for shapes. One-line ValueError if nothing matches (with a few
  of the available kernel paths) or if a rank exceeds min(I, O) of its kernel.
  """
  flat: dict[str, Any] = {}
  candidates = []
  for path, w in tree_lib.named_leaves(params):
    if path.rsplit("/", 1)[-1] not in ("kernel", "embedding") or np.ndim(w) < 2:
      continue
    candidates.append(path)
    rule = spec.rule(path)
    if rule is None:
      continue
    in_shape, out_shape = factor_shapes(path, np.shape(w), rule)
    d_in, d_out, r = math.prod(in_shape), math.prod(out_shape), rule.rank
    if r > min(d_in, d_out):
      raise ValueError(f"LoRA rank {r} of pattern {rule.pattern!r} exceeds min(in, out) = {min(d_in, d_out)} of {path} "
                       f"(kernel {tuple(np.shape(w))} read as [{d_in}, {d_out}])")
    key_a, key_b = jax.random.split(_path_key(key, path))
    if path.endswith("embedding"):
      a = jnp.zeros((d_in, r), jnp.float32)
      b = jax.random.normal(key_b, (r, d_out), jnp.float32)
    else:
      if spec.init == "kaiming":
        bound = 1.0 / math.sqrt(d_in)
        a = jax.random.uniform(key_a, (d_in, r), jnp.float32, -bound, bound)
      else:
        a = jax.random.normal(key_a, (d_in, r), jnp.float32) / r
      b = jnp.zeros((r, d_out), jnp.float32)
    flat[path] = {LORA_A: a, LORA_B: b}
  if not flat:
    shown = ", ".join(candidates[:6]) + (f", ... ({len(candidates)} in all)" if len(candidates) > 6 else "")
    raise ValueError(f"LoRA targets {spec.patterns()} match no kernel or embedding; available: {shown or 'none'}")
  return _tree_from(flat)


def delta(path: str, a: Array, b: Array, kernel_shape: Sequence[int], spec: LoraSpec) -> Array:
  """ΔW = s · (A @ B).reshape(kernel_shape) in float32 (Hu et al. §4.1; the weight the factored forward adds)."""
  kernel_shape = tuple(kernel_shape)
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0] or a.shape[0] * b.shape[1] != math.prod(kernel_shape):
    raise ValueError(f"adapter {path}: lora_a {tuple(a.shape)} @ lora_b {tuple(b.shape)} does not factor the base's "
                     f"kernel {kernel_shape} (adapters for another base?)")
  rule = spec.rule(path)
  if rule is None:
    raise ValueError(f"adapter {path} is not matched by the spec's targets {spec.patterns()}")
  in_shape, _ = factor_shapes(path, kernel_shape, rule)
  if a.shape[0] != math.prod(in_shape):
    raise ValueError(f"adapter {path}: lora_a has {a.shape[0]} input rows, the spec reads kernel {kernel_shape} as "
                     f"{math.prod(in_shape)} inputs (in_axes differs from the one used at init?)")
  ab = jnp.matmul(a.astype(jnp.float32), b.astype(jnp.float32), precision=jax.lax.Precision.HIGHEST)
  return (spec.scaling(path) * ab).reshape(kernel_shape)


def _merge(params: Any, lora_params: Any, spec: LoraSpec, sign: float) -> Any:
  pairs = adapters(lora_params)
  present = {path for path, _ in tree_lib.named_leaves(params)}
  missing = [p for p in pairs if p not in present]
  if missing:
    raise ValueError(f"adapter {missing[0]}: the base params have no such leaf (adapters for another base?)")

  def one(path: str, w: Array) -> Array:
    if path not in pairs:
      return w
    d = delta(path, *pairs[path], np.shape(w), spec)
    return (jnp.asarray(w).astype(jnp.float32) + sign * d).astype(jnp.asarray(w).dtype)

  return tree_lib.map_with_path_str(one, params)


def merge(params: Any, lora_params: Any, spec: LoraSpec) -> Any:
  """W = W₀ + ΔW for every adapted leaf (Hu et al. §4.2: no added inference latency); other leaves untouched.

  ΔW is computed in float32 and added to the base leaf cast to float32, then cast back to its dtype once.
  """
  return _merge(params, lora_params, spec, 1.0)


def unmerge(merged: Any, lora_params: Any, spec: LoraSpec) -> Any:
  """W₀ = W − ΔW (Hu et al. §4.2: switch tasks by subtracting one ΔW); float32 arithmetic, one cast back."""
  return _merge(merged, lora_params, spec, -1.0)


def count(lora_params: Any) -> int:
  """Number of trainable adapter parameters, Σ r·(I + O) over adapted kernels (Hu et al. §4.2, Table 2 counts)."""
  return int(sum(np.size(leaf) for leaf in jax.tree.leaves(lora_params)))


def _same_layout(lora_params_list: Sequence[Any], what: str, *, same_rank: bool) -> list[dict[str, tuple]]:
  if not lora_params_list:
    raise ValueError(f"{what}: needs at least one adapter tree")
  flats = [adapters(lp) for lp in lora_params_list]
  for i, flat in enumerate(flats[1:], 1):
    if set(flat) != set(flats[0]):
      diff = sorted(set(flat) ^ set(flats[0]))
      raise ValueError(f"{what}: adapter {i} targets differ from adapter 0 (e.g. {diff[0]}); they must share targets")
    for path, (a, b) in flat.items():
      a0, b0 = flats[0][path]
      if same_rank and (a.shape, b.shape) != (a0.shape, b0.shape):
        raise ValueError(f"{what}: adapter {i} at {path} has lora_a {a.shape}, lora_b {b.shape}; adapter 0 has "
                         f"{a0.shape}, {b0.shape} (adapters must share targets and ranks)")
      if not same_rank and (a.shape[0], b.shape[1]) != (a0.shape[0], b0.shape[1]):
        raise ValueError(f"{what}: adapter {i} at {path} factors [{a.shape[0]}, {b.shape[1]}], adapter 0 "
                         f"[{a0.shape[0]}, {b0.shape[1]}] (adapters for another base?)")
  return flats


def stack(lora_params_list: Sequence[Any]) -> dict[str, Any]:
  """One adapter tree with a leading adapter axis K on every leaf (A [K, I, r], B [K, r, O]) for `apply_mixed`.

  The adapters must share targets and ranks (a one-line ValueError names the first difference).
  """
  flats = _same_layout(lora_params_list, "lora_jax.stack", same_rank=True)
  return _tree_from({
    path: {LORA_A: jnp.stack([f[path][0] for f in flats]), LORA_B: jnp.stack([f[path][1] for f in flats])}
    for path in flats[0]
  })


def combine(
  weights: Sequence[float], lora_params_list: Sequence[Any], specs: Sequence[LoraSpec] | None = None
) -> dict[str, Any]:
  """Adapters whose ΔW is exactly Σᵢ wᵢ·ΔWᵢ: concatenation along the rank (peft `add_weighted_adapter`, 'cat').

  A = [c₁A₁ | ... | cₙAₙ] (rank Σ rᵢ) and B = [B₁; ...; Bₙ], so s·A@B = Σ s·cᵢ·AᵢBᵢ. The result is meant for the
  spec of adapter 0 (its scaling s₀ = α/r, not α/Σrᵢ: the scaling comes from the spec, never from leaf shapes), so
  cᵢ = wᵢ·sᵢ/s₀ per path. Without `specs` all adapters are taken to share one spec (cᵢ = wᵢ). Scaling A and B
  each by √wᵢ instead (peft's 'linear') would add cross terms AᵢBⱼ and is not a sum of deltas.
  """
  if len(weights) != len(lora_params_list):
    raise ValueError(f"lora_jax.combine: {len(weights)} weights for {len(lora_params_list)} adapters")
  if specs is not None and len(specs) != len(lora_params_list):
    raise ValueError(f"lora_jax.combine: {len(specs)} specs for {len(lora_params_list)} adapters")
  flats = _same_layout(lora_params_list, "lora_jax.combine", same_rank=False)
  out = {}
  for path in flats[0]:
    coeffs = [weights[i] * (1.0 if specs is None else specs[i].scaling(path) / specs[0].scaling(path))
              for i in range(len(flats))]
    a = jnp.concatenate([jnp.asarray(c, f[path][0].dtype) * f[path][0] for c, f in zip(coeffs, flats)], axis=1)
    b = jnp.concatenate([f[path][1] for f in flats], axis=0)
    out[path] = {LORA_A: a, LORA_B: b}
  return _tree_from(out)
