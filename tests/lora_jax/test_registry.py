"""lora_jax.Registry: named adapters over one base, switched without recompiling, mixed in one batch, merged."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lora_jax
from lora_jax import checkpoint
from lora_jax.registry import Registry


class _Mlp(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(5, name="out")(jnp.tanh(nn.Dense(12, name="hidden")(x)))


SPEC = lora_jax.LoraSpec(r"(hidden|out)/kernel", rank=2, alpha=4.0)
X = jax.random.normal(jax.random.key(9), (6, 7))


def _adapter(seed, spec=SPEC):
  lora = lora_jax.init(jax.random.key(seed), PARAMS, spec)
  return jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(seed + 100), x.shape), lora)


PARAMS = _Mlp().init(jax.random.key(0), X)["params"]


def test_switching_reuses_one_program_and_matches_apply():
  registry = Registry(_Mlp(), PARAMS, SPEC)
  adapters = {f"task{i}": _adapter(i) for i in range(3)}
  for name, lora in adapters.items():
    registry.add(name, lora)
  outputs = {}
  for name in ["task0", "task1", "task2", "task0"]:
    outputs[name] = registry(name, X)
    np.testing.assert_allclose(outputs[name], lora_jax.apply(_Mlp(), PARAMS, adapters[name], SPEC, X), atol=1e-6)
  assert registry.compiled_programs() == 1
  assert float(jnp.abs(outputs["task0"] - outputs["task1"]).max()) > 1e-3

  # Mixed batch: row b with names[b]; None = the base model.
  names = ["task2", None, "task0", "task1", "task2", None]
  mixed = registry.mixed(names, X)
  base = _Mlp().apply({"params": PARAMS}, X)
  for b, name in enumerate(names):
    np.testing.assert_allclose(mixed[b], (base if name is None else outputs[name])[b], atol=1e-5)

  merged = registry.merged("task1")
  np.testing.assert_allclose(_Mlp().apply({"params": merged}, X), outputs["task1"], atol=1e-5)


def test_registry_rejects_what_it_cannot_serve(tmp_path):
  registry = Registry(_Mlp(), PARAMS, SPEC)
  registry.add("a", _adapter(0))
  with pytest.raises(ValueError, match="already registered"):
    registry.add("a", _adapter(1))
  other_rank = lora_jax.LoraSpec(r"(hidden|out)/kernel", rank=3, alpha=4.0)
  with pytest.raises(ValueError, match="must share targets and ranks"):
    registry.add("b", _adapter(1, other_rank))
  with pytest.raises(KeyError, match=r"no adapter named 'c' \(have \['a'\]\)"):
    registry("c", X)
  checkpoint.save(tmp_path / "c", _adapter(2), SPEC)
  registry.load("c", tmp_path / "c")
  np.testing.assert_allclose(registry("c", X), lora_jax.apply(_Mlp(), PARAMS, _adapter(2), SPEC, X), atol=1e-6)
  checkpoint.save(tmp_path / "d", _adapter(3, other_rank), other_rank)
  with pytest.raises(ValueError, match="was trained with"):
    registry.load("d", tmp_path / "d")
