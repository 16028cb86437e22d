"""lora_jax: spec, init statistics, factored forward vs merged weights for every module kind, merge precision,
mixed batches, exact combination, dropout, gradients (reference/lora.md §7). Tiny shapes: the file runs in seconds."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lora_jax
from core import bert
from core import tree as tree_lib
from lora_jax import LoraSpec
from tests.helpers import jit_once

B, L, V, E = 6, 5, 11, 8


class Zoo(nn.Module):
  """One of each adaptable kind: Embed (lookup and tied attend), DenseGeneral out features (N, D) and over two input
  axes (the Reformer/flax-MHA output projection), Einsum, Dense, Conv."""

  @nn.compact
  def __call__(self, ids_BxL, img_BxHxWxC):
    embed = nn.Embed(V, E, name="embed")
    h_BxLxE = embed(ids_BxL)
    q_BxLxNxD = nn.DenseGeneral((2, 4), name="qkv")(h_BxLxE)  # kernel [E, N, D]: in_axes=1
    o_BxLxE = nn.DenseGeneral(E, axis=(-2, -1), name="out")(q_BxLxNxD)  # kernel [N, D, E]: in_axes=2 (default)
    e_BxLxNxD = nn.Einsum((E, 2, 3), "blh,hnd->blnd", name="ein")(o_BxLxE)  # kernel [E, N, D]: in_axes=1
    d_BxLxE = nn.Dense(E, name="dense")(e_BxLxNxD.reshape(*e_BxLxNxD.shape[:2], 6))
    logits_BxLxV = embed.attend(d_BxLxE)
    conv_BxHxWxC = nn.Conv(3, (3, 3), name="conv")(img_BxHxWxC)  # kernel [3, 3, 2, 3]
    return logits_BxLxV, conv_BxHxWxC


KINDS = {
  "embed": [r"embed/embedding"],
  "dense_general_features": [(r"qkv/kernel", None, None, 1)],
  "dense_general_axes": [r"out/kernel"],
  "einsum": [(r"ein/kernel", None, None, 1)],
  "dense": [r"dense/kernel"],
  "conv": [r"conv/kernel"],
}
ALL_TARGETS = [t for ts in KINDS.values() for t in ts]


@pytest.fixture(scope="module")
def zoo():
  rng = np.random.default_rng(0)
  ids = jnp.asarray(rng.integers(0, V, (B, L)), jnp.int32)
  img = jnp.asarray(rng.normal(size=(B, 4, 4, 2)), jnp.float32)
  model = Zoo()
  return model, _random_params(model, 0, ids, img), (ids, img)


def _random_params(model, seed, *args):
  """N(0, 0.3²) params of the model's shapes, without running its initialisers (eager init compiles every op)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, jax.random.key(0), *args)["params"]
  return jax.tree.map(lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape), s.dtype), shapes)


def _randomise(lora_params, seed, scale=0.3):
  """Non-zero A and B (peft's init_lora_weights=False), so ΔW ≠ 0."""
  leaves, treedef = jax.tree.flatten(lora_params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return treedef.unflatten([scale * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])


def _close(a, b, atol=1e-5):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=1e-5), a, b)


# ---------------------------------------------------------------------------------------------------------- spec


@pytest.mark.parametrize(
  "kwargs, field",
  [
    (dict(rank=0), "rank"),
    (dict(rank=2.0), "rank"),
    (dict(alpha=0.0), "alpha"),
    (dict(alpha=float("inf")), "alpha"),
    (dict(dropout=1.0), "dropout"),
    (dict(dropout=-0.1), "dropout"),
    (dict(init="xavier"), "init"),
    (dict(in_axes=0), "in_axes"),
    (dict(targets=[]), "targets"),
    (dict(targets="(unclosed"), "targets"),
    (dict(targets=[("a/kernel", 0)]), "targets[0] rank"),
  ],
)
def test_spec_validation_errors_are_one_line_and_name_the_field(kwargs, field):
  with pytest.raises(ValueError) as e:
    LoraSpec(**{"targets": "x/kernel", **kwargs})
  assert "\n" not in str(e.value) and f"LoraSpec.{field}" in str(e.value)
  if field == "init":
    assert "kaiming" in str(e.value) and "gaussian" in str(e.value)


def test_spec_is_hashable_and_scaling_is_exactly_alpha_over_r_or_sqrt_r():
  spec = LoraSpec([r".*/query/kernel", (r".*/value/kernel", 4, 32.0)], rank=8, alpha=16.0)
  assert hash(spec) == hash(LoraSpec([r".*/query/kernel", (r".*/value/kernel", 4, 32.0)], rank=8, alpha=16.0))
  assert spec.scaling("l/query/kernel") == 16.0 / 8 and spec.scaling("l/value/kernel") == 32.0 / 4
  rs = LoraSpec([r".*/query/kernel", (r".*/value/kernel", 4, 32.0)], rank=9, alpha=16.0, rslora=True)
  assert rs.scaling("l/query/kernel") == 16.0 / 3.0 and rs.scaling("l/value/kernel") == 32.0 / 2.0
  assert spec.rule("l/query/bias") is None  # a bias is never a target, even when a pattern matches it
  with pytest.raises(ValueError, match="no target pattern matches"):
    spec.scaling("l/key/kernel")


# ---------------------------------------------------------------------------------------------------------- init


def test_init_statistics_kaiming_gaussian_and_embedding():
  params = {"lin": {"kernel": jnp.zeros((256, 16))}, "emb": {"embedding": jnp.zeros((64, 16))}}
  lp = lora_jax.init(jax.random.key(0), params, LoraSpec([r"lin/kernel", r"emb/embedding"], rank=8))
  a, b = np.asarray(lp["lin"]["kernel"]["lora_a"]), np.asarray(lp["lin"]["kernel"]["lora_b"])
  assert a.shape == (256, 8) and b.shape == (8, 16) and a.dtype == np.float32
  assert np.all(b == 0)
  bound = 1.0 / math.sqrt(256)  # kaiming_uniform(a=√5) on fan_in 256 (loralib)
  assert np.abs(a).max() <= bound
  # Kolmogorov-Smirnov distance to U(-bound, bound); the 1% critical value is 1.63/√n.
  u = np.sort((a.ravel() + bound) / (2 * bound))
  n = u.size
  ks = max(np.max(np.arange(1, n + 1) / n - u), np.max(u - np.arange(n) / n))
  assert ks < 1.63 / math.sqrt(n), ks
  # Embedding: reversed (loralib Embedding): A = 0, B ~ N(0, 1).
  ea, eb = np.asarray(lp["emb"]["embedding"]["lora_a"]), np.asarray(lp["emb"]["embedding"]["lora_b"])
  assert ea.shape == (64, 8) and eb.shape == (8, 16) and np.all(ea == 0)
  assert abs(eb.std() - 1.0) < 0.2
  g = lora_jax.init(jax.random.key(0), params, LoraSpec(r"lin/kernel", rank=8, init="gaussian"))["lin"]["kernel"]
  assert abs(np.asarray(g["lora_a"]).std() - 1 / 8) < 0.02 and np.all(np.asarray(g["lora_b"]) == 0)


def test_init_keys_are_per_path_and_order_free():
  params = {"a": {"kernel": jnp.zeros((4, 3))}, "b": {"kernel": jnp.zeros((4, 3))}}
  both = lora_jax.init(jax.random.key(3), params, LoraSpec(r"(a|b)/kernel", rank=2))
  only_b = lora_jax.init(jax.random.key(3), {"b": params["b"]}, LoraSpec(r"b/kernel", rank=2))
  np.testing.assert_array_equal(both["b"]["kernel"]["lora_a"], only_b["b"]["kernel"]["lora_a"])
  assert not np.array_equal(both["a"]["kernel"]["lora_a"], both["b"]["kernel"]["lora_a"])
  raw = lora_jax.init(jax.random.key_data(jax.random.key(3)), params, LoraSpec(r"(a|b)/kernel", rank=2))
  np.testing.assert_array_equal(raw["a"]["kernel"]["lora_a"], both["a"]["kernel"]["lora_a"])


def test_init_errors_no_match_and_rank_too_large(zoo):
  _, params, _ = zoo
  with pytest.raises(ValueError) as e:
    lora_jax.init(jax.random.key(0), params, LoraSpec(r".*/query/kernel"))
  msg = str(e.value)
  assert "\n" not in msg and "match no kernel" in msg and "dense/kernel" in msg
  with pytest.raises(ValueError, match=r"rank 9 .* exceeds min\(in, out\) = 6"):
    lora_jax.init(jax.random.key(0), params, LoraSpec(r"dense/kernel", rank=9))


# ------------------------------------------------------------------------------------- forward, every module kind


@pytest.mark.parametrize("kind", list(KINDS) + ["all"])
def test_factored_apply_equals_merged_model(zoo, kind):
  model, params, args = zoo
  spec = LoraSpec(ALL_TARGETS if kind == "all" else KINDS[kind], rank=2, alpha=3.0)
  lp = lora_jax.init(jax.random.key(1), params, spec)
  base = model.apply({"params": params}, *args)
  # Default init (B = 0, or A = 0 for embeddings): bit-identical to the base model.
  jax.tree.map(np.testing.assert_array_equal, lora_jax.apply(model, params, lp, spec, *args), base)
  lp = _randomise(lp, seed=2)
  factored = lora_jax.apply(model, params, lp, spec, *args)
  merged = lora_jax.merge(params, lp, spec)
  _close(factored, model.apply({"params": merged}, *args))
  assert any(not np.allclose(f, b, atol=1e-4) for f, b in zip(factored, base))  # the adapters do something


def test_in_axes_mismatch_names_the_pattern_and_the_fix(zoo):
  model, params, args = zoo
  spec = LoraSpec(r"qkv/kernel", rank=2)  # [E, N, D] read as [E·N, D] by default: not how the module contracts
  lp = lora_jax.init(jax.random.key(0), params, spec)
  with pytest.raises(ValueError, match=r"qkv/kernel is an nn.DenseGeneral with 1 input axes.*set in_axes=1"):
    lora_jax.apply(model, params, lp, spec, *args)


def test_adapters_for_another_base_are_a_one_line_error(zoo):
  model, params, args = zoo
  spec = LoraSpec(r"dense/kernel", rank=2)
  other = {"dense": {"kernel": {"lora_a": jnp.zeros((7, 2)), "lora_b": jnp.zeros((2, E))}}}
  for fn in (lambda: lora_jax.apply(model, params, other, spec, *args), lambda: lora_jax.merge(params, other, spec)):
    with pytest.raises(ValueError, match="another base") as e:
      fn()
    assert "\n" not in str(e.value)
  with pytest.raises(ValueError, match="no such leaf"):
    lora_jax.merge(params, {"nope": other["dense"]}, spec)


# ------------------------------------------------------------------------------------------------ merge precision


def test_unmerge_of_merge_is_identity_and_bf16_merge_is_fp32_merge_cast_once(zoo):
  _, params, _ = zoo
  spec = LoraSpec(ALL_TARGETS, rank=2)
  lp = _randomise(lora_jax.init(jax.random.key(1), params, spec), seed=3)
  merged = lora_jax.merge(params, lp, spec)
  _close(lora_jax.unmerge(merged, lp, spec), params, atol=1e-6)
  assert not np.allclose(merged["dense"]["kernel"], params["dense"]["kernel"])
  np.testing.assert_array_equal(merged["dense"]["bias"], params["dense"]["bias"])
  bf16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
  merged_bf16 = lora_jax.merge(bf16, lp, spec)
  want = jax.tree.map(lambda x: x.astype(jnp.bfloat16), lora_jax.merge(jax.tree.map(lambda x: x.astype(jnp.float32),
                                                                                     bf16), lp, spec))
  for got, ref in zip(jax.tree.leaves(merged_bf16), jax.tree.leaves(want)):
    assert got.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(ref, np.float32))


# ------------------------------------------------------------------------------------------------- BERT encoder

CFG = bert.BertConfig(vocab_size=30, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=24,
                      max_position_embeddings=16, hidden_dropout_rate=0.0, attention_dropout_rate=0.0)
QV = r".*/attention/(query|value)/kernel"


@pytest.fixture(scope="module")
def encoder():
  ids = jnp.asarray(np.random.default_rng(4).integers(0, CFG.vocab_size, (3, 7)), jnp.int32)
  model = bert.BertEncoder(CFG)
  return model, _random_params(model, 1, ids), ids


def test_bert_query_value_adapters_count_merge_jit_and_grads(encoder):
  model, params, ids = encoder
  r = 4
  spec = LoraSpec(QV, rank=r, alpha=8.0)
  lp = lora_jax.init(jax.random.key(1), params, spec)
  h = CFG.hidden_size
  assert lora_jax.count(lp) == CFG.num_layers * 2 * r * (h + h)  # 2·r·(d_in + d_out) per layer for Wq, Wv
  assert set(lp["layer_0"]["attention"]) == {"query", "value"}
  fwd = jax.jit(lambda p, a, x: lora_jax.apply(model, p, a, spec, x))  # spec static (closed over), trees as args
  base_fwd = jax.jit(lambda p, x: model.apply({"params": p}, x))
  base = base_fwd(params, ids)
  np.testing.assert_array_equal(fwd(params, lp, ids), base)

  lp = _randomise(lp, seed=5)
  factored = fwd(params, lp, ids)
  np.testing.assert_allclose(factored, base_fwd(lora_jax.merge(params, lp, spec), ids), atol=1e-5, rtol=1e-5)
  assert not np.allclose(factored, base, atol=1e-4)

  # Gradients w.r.t. the adapters only: every A and B of every targeted layer gets one.
  loss = lambda a: jnp.mean(jnp.square(lora_jax.apply(model, params, a, spec, ids)))
  grads = lora_jax.adapters(jit_once(jax.grad(loss), lp))
  assert len(grads) == 2 * CFG.num_layers
  for path, (ga, gb) in grads.items():
    assert np.abs(ga).max() > 0 and np.abs(gb).max() > 0, path

  # A mixed batch over the core attention projections: row 0 adapter 1, row 1 the base, row 2 adapter 0.
  lp1 = _randomise(lp, seed=7)
  mixed = jit_once(lambda p, s, i, x: lora_jax.apply_mixed(model, p, s, i, spec, x), params, lora_jax.stack([lp, lp1]),
                   jnp.asarray([1, -1, 0]), ids)
  np.testing.assert_allclose(mixed[0], fwd(params, lp1, ids)[0], atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(mixed[1], base[1], atol=1e-6, rtol=1e-6)  # another compiled program: rounding only
  np.testing.assert_allclose(mixed[2], factored[2], atol=1e-5, rtol=1e-5)


def test_dropout_only_when_not_deterministic(zoo):
  model, params, args = zoo
  spec = LoraSpec(ALL_TARGETS, rank=2, dropout=0.5)
  lp = _randomise(lora_jax.init(jax.random.key(1), params, spec), seed=6)
  det = lora_jax.apply(model, params, lp, spec, *args)
  same = lora_jax.apply(model, params, lp, spec, *args, rngs={"lora_dropout": jax.random.key(0)}, deterministic=True)
  jax.tree.map(np.testing.assert_array_equal, det, same)
  drop = lora_jax.apply(model, params, lp, spec, *args, rngs={"lora_dropout": jax.random.key(0)}, deterministic=False)
  base = model.apply({"params": params}, *args)
  for d, x, b in zip(drop, det, base):  # the Dense-family and Conv branches and the tied attend all see dropout
    assert not np.allclose(d, x, atol=1e-5) and not np.allclose(d, b, atol=1e-5)
  with pytest.raises(ValueError, match="lora_dropout"):
    lora_jax.apply(model, params, lp, spec, *args, deterministic=False)


# ------------------------------------------------------------------------------------------------- mixed batches


def test_mixed_batch_rows_equal_single_adapter_runs(zoo):
  model, params, args = zoo
  spec = LoraSpec(ALL_TARGETS, rank=2)
  lps = [_randomise(lora_jax.init(jax.random.key(i), params, spec), seed=10 + i) for i in range(2)]
  stacked = lora_jax.stack(lps)
  assert stacked["dense"]["kernel"]["lora_a"].shape == (2, 6, 2)
  ids_B = jnp.asarray([-1, 0, 1] * (B // 3), jnp.int32)
  mixed = jax.jit(lambda p, s, i, *a: lora_jax.apply_mixed(model, p, s, i, spec, *a))(params, stacked, ids_B, *args)
  base = model.apply({"params": params}, *args)
  singles = [lora_jax.apply(model, params, lp, spec, *args) for lp in lps]
  for got, want_base, want0, want1 in zip(mixed, base, *singles):
    np.testing.assert_allclose(got[::3], want_base[::3], atol=1e-6, rtol=1e-6)  # id -1: the base (jit vs eager)
    np.testing.assert_allclose(got[1::3], want0[1::3], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(got[2::3], want1[2::3], atol=1e-5, rtol=1e-5)
  # The same as looping over adapters one sub-batch at a time (peft's _mixed_batch_forward).
  loop = [lora_jax.apply(model, params, lps[k], spec, *(x[k + 1::3] for x in args)) for k in range(2)]
  for got, want0, want1 in zip(mixed, *loop):
    np.testing.assert_allclose(got[1::3], want0, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(got[2::3], want1, atol=1e-5, rtol=1e-5)
  with pytest.raises(ValueError, match=r"adapter ids must be in \[-1, 2\)"):
    lora_jax.apply_mixed(model, params, stacked, jnp.asarray([0, 2, 0, 0, 0, 0]), spec, *args)
  with pytest.raises(ValueError, match="stacked by lora_jax.stack"):
    lora_jax.apply_mixed(model, params, lps[0], ids_B, spec, *args)


def test_stack_needs_shared_targets_and_ranks():
  params = {"q": {"kernel": jnp.zeros((4, 4))}, "v": {"kernel": jnp.zeros((4, 4))}}
  qv = lora_jax.init(jax.random.key(0), params, LoraSpec(r"(q|v)/kernel", rank=2))
  with pytest.raises(ValueError, match="share targets and ranks"):
    lora_jax.stack([qv, lora_jax.init(jax.random.key(0), params, LoraSpec(r"(q|v)/kernel", rank=3))])
  with pytest.raises(ValueError, match="targets differ"):
    lora_jax.stack([qv, lora_jax.init(jax.random.key(0), params, LoraSpec(r"q/kernel", rank=2))])


# ------------------------------------------------------------------------------------------------- combination


def _deltas(params, lp, spec):
  merged = lora_jax.merge(params, lp, spec)
  return {p: np.asarray(merged_leaf, np.float64) - np.asarray(base_leaf, np.float64)
          for (p, merged_leaf), base_leaf in zip(tree_lib.named_leaves(merged), jax.tree.leaves(params))}


def test_combine_equals_weighted_sum_of_deltas_and_naive_scaling_does_not(encoder):
  _, params, _ = encoder
  specs = [LoraSpec(QV, rank=2, alpha=4.0), LoraSpec(QV, rank=4, alpha=2.0, rslora=True)]
  lps = [_randomise(lora_jax.init(jax.random.key(i), params, s), seed=30 + i) for i, s in enumerate(specs)]
  w = [0.7, -1.3]
  combined = lora_jax.combine(w, lps, specs)
  assert combined["layer_0"]["attention"]["query"]["kernel"]["lora_a"].shape == (CFG.hidden_size, 6)
  got = _deltas(params, combined, specs[0])  # the result goes with adapter 0's spec
  d = [_deltas(params, lp, s) for lp, s in zip(lps, specs)]
  for path in got:
    np.testing.assert_allclose(got[path], w[0] * d[0][path] + w[1] * d[1][path], atol=1e-5)
  # Without specs the adapters are taken to share one: equal ranks and alphas combine the same way.
  same = [_randomise(lora_jax.init(jax.random.key(i), params, specs[0]), seed=40 + i) for i in range(2)]
  got = _deltas(params, lora_jax.combine(w, same), specs[0])
  d = [_deltas(params, lp, specs[0]) for lp in same]
  path = "layer_1/attention/value/kernel"
  np.testing.assert_allclose(got[path], w[0] * d[0][path] + w[1] * d[1][path], atol=1e-5)
  # peft's 'linear' (√w on A and on B, summed at equal rank) has cross terms A₀B₁ + A₁B₀: not Σ w·ΔW.
  pos = [0.3, 0.7]
  naive = jax.tree.map(lambda x, y: math.sqrt(pos[0]) * x + math.sqrt(pos[1]) * y, *same)
  got = _deltas(params, naive, specs[0])
  assert not np.allclose(got[path], pos[0] * d[0][path] + pos[1] * d[1][path], atol=1e-3)
  with pytest.raises(ValueError, match="2 weights for 1 adapters"):
    lora_jax.combine(w, same[:1])


def test_a_model_that_applies_no_interceptable_module_is_an_error():
  class RawKernel(nn.Module):  # multiplies by a raw param: interception on nn.Dense cannot see it

    @nn.compact
    def __call__(self, x):
      return x @ self.param("kernel", nn.initializers.ones, (4, 3))

  model, x = RawKernel(), jnp.ones((2, 4))
  params = {"kernel": jnp.ones((4, 3))}
  spec = LoraSpec(r"kernel", rank=1)
  with pytest.raises(ValueError, match="no adapted module was called") as e:
    lora_jax.apply(model, params, lora_jax.init(jax.random.key(0), params, spec), spec, x)
  assert "\n" not in str(e.value)
