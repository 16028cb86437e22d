"""Cached decoding: one `decode_step` per position reproduces the full forward's logits at every position (layers
'lsh' with one chunk covering the sequence, 'local', 'full', 'full_shared_qk'); greedy and top-1 sampling follow the
full forward's argmax and keep the prompt; bad arguments fail before any work."""

import jax
import numpy as np
import pytest

from reformer_jax import decode
from reformer_jax import model as model_lib
from tests.helpers import UNOPTIMISED, jit_once

# Length 12 is padded to 16 (lcm of the chunks): the LSH chunk covers it, so LSH = full shared-QK attention.
CONFIG = model_lib.ReformerConfig(
  d_model=16, d_ff=32, n_layers=4, n_heads=2, d_head=8, attention=("lsh", "local", "full", "full_shared_qk"),
  n_hashes=2, chunk_len=16, local_chunk_len=4, max_len=32,
).validate()


@pytest.fixture(scope="module")
def setup():
  model = model_lib.ReformerLM(CONFIG)
  ids_BxL = np.random.default_rng(0).integers(3, 259, (2, 12), dtype=np.int32)
  params = jit_once(model.init, jax.random.key(1), ids_BxL)
  apply = lambda p, ids: model.apply(p, ids, rngs={"hash": jax.random.key(2)})  # noqa: E731
  forward = jax.jit(apply).lower(params, ids_BxL).compile(UNOPTIMISED)
  return params, ids_BxL, forward


def test_cached_incremental_logits_equal_the_full_forward(setup):
  params, ids_BxL, forward = setup
  full_BxLxV = forward(params, ids_BxL)
  cached_BxLxV = decode.incremental_logits.lower(params, CONFIG, ids_BxL).compile(UNOPTIMISED)(params, ids_BxL)
  assert cached_BxLxV.shape == full_BxLxV.shape == (2, 12, 259)
  np.testing.assert_allclose(cached_BxLxV, full_BxLxV, atol=1e-4)
  assert np.abs(np.diff(np.asarray(full_BxLxV), axis=1)).max() > 1e-2  # positions differ: a real comparison


def test_greedy_and_top1_sampling_follow_the_full_forward_argmax(setup):
  params, ids_BxL, forward = setup
  prompt_BxP = ids_BxL[:, :3]
  def sample(key, **kwargs):
    compiled = decode.sample.lower(params, CONFIG, prompt_BxP, key, max_new_tokens=9, **kwargs).compile(UNOPTIMISED)
    return compiled(params, prompt_BxP, key)

  greedy = sample(jax.random.key(3), temperature=0.0)
  assert greedy.shape == (2, 12)
  np.testing.assert_array_equal(greedy[:, :3], prompt_BxP)
  full_BxLxV = forward(params, greedy)
  np.testing.assert_array_equal(greedy[:, 3:], np.argmax(full_BxLxV[:, 2:-1], axis=-1))
  top1 = sample(jax.random.key(4), temperature=1.0, top_k=1)
  np.testing.assert_array_equal(top1, greedy)


@pytest.mark.parametrize(
  "kwargs, message",
  [
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(max_new_tokens=30), "exceed the model's 32 positions"),
    (dict(max_new_tokens=2, temperature=-1.0), "temperature"),
    (dict(max_new_tokens=2, top_k=0), "top_k"),
  ],
)
def test_bad_sampling_arguments_fail_before_any_work(setup, kwargs, message):
  params, ids_BxL, _ = setup
  with pytest.raises(ValueError, match=message):
    decode.sample(params, CONFIG, ids_BxL[:, :3], jax.random.key(0), **kwargs)
