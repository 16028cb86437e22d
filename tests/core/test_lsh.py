"""core.lsh against loop-by-loop numpy references: the sorted-chunk definition of LSH attention (Reformer §2), full
shared-QK attention when one chunk covers the sequence, banded attention for local chunks; plus the invariants
reference/reformer.md §7 lists (causality, padding, identical rounds, sort round trip, determinism)."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core import lsh
from tests.helpers import REPO

SELF, MASKED = -1e5, -1e9


def _inputs(seed=0, batch=2, length=16, heads=2, dim=4):
  rng = np.random.default_rng(seed)
  qk = rng.normal(size=(batch, length, heads, dim)).astype(np.float32)
  v = rng.normal(size=(batch, length, heads, dim)).astype(np.float32)
  return qk, v


def _softmax_rows(logits):
  logits = logits.astype(np.float64)
  shifted = np.exp(logits - logits.max(-1, keepdims=True))
  return shifted / shifted.sum(-1, keepdims=True), np.log(shifted.sum(-1)) + logits.max(-1)


def reference_lsh(qk, v, buckets, *, chunk_len, causal=False, mask=None, before=1, after=0):
  """Reformer §2 item by item: per (batch, head) the R·L items (round r, position i) sorted by (round, bucket,
  position), cut into chunks; an item attends to the items of its chunk and its neighbours (wrapping), keys = unit
  queries, own position −1e5, causal / padded −1e9; rounds merged by softmax over their log-sum-exp."""
  batch, length, heads, dim = qk.shape
  rounds = buckets.shape[2]
  mask = np.ones((batch, length), bool) if mask is None else mask.astype(bool)
  out = np.zeros_like(v)
  for b in range(batch):
    for n in range(heads):
      items = sorted(
        ((r, int(buckets[b, n, r, i]), i) for r in range(rounds) for i in range(length)), key=lambda t: t[:3]
      )
      n_chunks = len(items) // chunk_len
      item_out = {}
      for s, (r, _, i) in enumerate(items):
        chunk = s // chunk_len
        keys = [
          items[c * chunk_len + k][2]
          for c in ((chunk + o) % n_chunks for o in range(-before, after + 1))
          for k in range(chunk_len)
        ]
        q = qk[b, i, n]
        k_hat = qk[b, keys, n] / np.linalg.norm(qk[b, keys, n], axis=-1, keepdims=True)
        logits = k_hat @ q
        logits = np.where(np.array(keys) == i, SELF, logits)
        allowed = mask[b, keys] & ((np.array(keys) <= i) if causal else True)
        logits = np.where(allowed, logits, MASKED)
        probs, lse = _softmax_rows(logits)
        item_out[(r, i)] = (probs @ v[b, keys, n], lse)
      for i in range(length):
        lses = np.array([item_out[(r, i)][1] for r in range(rounds)])
        weights = np.exp(lses - lses.max()) / np.exp(lses - lses.max()).sum()
        out[b, i, n] = sum(w * item_out[(r, i)][0] for r, w in enumerate(weights)) if mask[b, i] else 0.0
  return out


def reference_full_shared_qk(qk, v, *, causal=False, mask=None):
  """Full attention with shared QK: logits q·k̂, own position −1e5, causal / padded −1e9."""
  batch, length = qk.shape[:2]
  k_hat = qk / np.linalg.norm(qk, axis=-1, keepdims=True)
  logits = np.einsum("bind,bjnd->bnij", qk, k_hat)
  logits = np.where(np.eye(length, dtype=bool), SELF, logits)
  allowed = np.ones((batch, 1, length, length), bool)
  if mask is not None:
    allowed &= mask.astype(bool)[:, None, None, :]
  if causal:
    allowed &= np.tril(np.ones((length, length), bool))
  probs, _ = _softmax_rows(np.where(allowed, logits, MASKED))
  out = np.einsum("bnij,bjnd->bind", probs, v)
  return out if mask is None else out * mask[:, :, None, None]


@pytest.mark.parametrize("causal", [False, True])
def test_lsh_equals_sorted_chunk_reference(causal):
  qk, v = _inputs()
  mask = np.ones((2, 16), np.int32)
  mask[1, 11:] = 0
  kw = dict(n_hashes=2, n_buckets=4, chunk_len=4, causal=causal, attention_mask=mask)
  out, buckets = lsh.lsh_attention(qk, v, jax.random.key(3), return_buckets=True, **kw)
  assert buckets.shape == (2, 2, 2, 16) and buckets.dtype == jnp.int32
  assert np.all(np.asarray(buckets)[1, :, :, 11:] == 4) and np.all(np.asarray(buckets)[1, :, :, :11] < 4)
  expected = reference_lsh(qk, v, np.asarray(buckets), chunk_len=4, causal=causal, mask=mask)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("causal,n_hashes", [(False, 1), (False, 3), (True, 2)])
def test_one_chunk_covering_the_sequence_is_full_shared_qk_attention(causal, n_hashes):
  qk, v = _inputs(seed=1)
  mask = np.ones((2, 16), np.int32)
  mask[0, 13:] = 0
  out = lsh.lsh_attention(
    qk, v, jax.random.key(0), n_hashes=n_hashes, n_buckets=8, chunk_len=64, causal=causal, attention_mask=mask
  )
  np.testing.assert_allclose(out, reference_full_shared_qk(qk, v, causal=causal, mask=mask), rtol=1e-5, atol=1e-5)


def test_identical_rounds_equal_one_round():
  qk, v = _inputs(seed=2)
  kw = dict(n_buckets=4, chunk_len=4, causal=True)
  one, buckets = lsh.lsh_attention(qk, v, jax.random.key(5), n_hashes=1, return_buckets=True, **kw)
  three = lsh.lsh_attention(qk, v, None, n_hashes=3, buckets=jnp.concatenate([buckets] * 3, axis=2), **kw)
  np.testing.assert_allclose(three, one, rtol=1e-5, atol=1e-6)


def test_causal_gradient_to_later_positions_is_exactly_zero():
  qk, v = _inputs(seed=3, batch=1, length=16, heads=1, dim=4)

  def out(qk, v):
    return lsh.lsh_attention(qk, v, jax.random.key(1), n_hashes=2, n_buckets=4, chunk_len=4, causal=True)[0, :, 0]

  d_qk, d_v = jax.jacrev(out, argnums=(0, 1))(qk, v)  # [L, D, 1, L, 1, D]
  later = np.triu(np.ones((16, 16), bool), k=1)  # (i, j): j > i
  for grad in (d_qk, d_v):
    per_pair = np.abs(np.asarray(grad)[:, :, 0, :, 0, :]).sum(axis=(1, 3))
    assert np.all(per_pair[later] == 0.0)
  assert np.all(np.abs(np.asarray(d_v)).sum(axis=(1, 2, 3, 4, 5)) > 0)  # every output still depends on some value


def test_padding_changes_no_unpadded_output():
  qk, v = _inputs(seed=4)
  mask = np.ones((2, 16), np.int32)
  mask[:, 10:] = 0
  noisy_qk, noisy_v = qk.copy(), v.copy()
  noisy_qk[:, 10:] = 100 * np.random.default_rng(0).normal(size=noisy_qk[:, 10:].shape)
  noisy_v[:, 10:] = -7.0
  kw = dict(n_hashes=2, n_buckets=4, chunk_len=4, attention_mask=mask)
  clean = lsh.lsh_attention(qk, v, jax.random.key(2), **kw)
  noisy = lsh.lsh_attention(noisy_qk, noisy_v, jax.random.key(2), **kw)
  np.testing.assert_array_equal(np.asarray(noisy)[:, :10], np.asarray(clean)[:, :10])
  assert np.all(np.asarray(clean)[:, 10:] == 0)


def test_sort_round_trip_and_permutation_gradient():
  buckets = jnp.asarray(np.random.default_rng(0).integers(0, 5, size=(2, 3, 2, 8)), jnp.int32)
  order, undo = lsh.sort_by_bucket(buckets)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3, 16, 4)), jnp.float32)
  np.testing.assert_array_equal(lsh.permute(lsh.permute(x, order, undo), undo, order), x)
  keys = np.asarray(buckets).reshape(2, 3, 16) + np.repeat(np.arange(2) * 5, 8)  # (round, bucket) then position
  sorted_keys = np.take_along_axis(keys, np.asarray(order), axis=-1)
  assert np.all(np.diff(sorted_keys, axis=-1) >= 0)
  ties = np.diff(sorted_keys, axis=-1) == 0
  assert np.all(np.diff(np.asarray(order), axis=-1)[ties] > 0)  # stable: positions ascending inside a bucket
  weights = jnp.asarray(np.random.default_rng(2).normal(size=x.shape), jnp.float32)
  custom = jax.grad(lambda x: jnp.sum(lsh.permute(x, order, undo) * weights))(x)
  autodiff = jax.grad(lambda x: jnp.sum(jnp.take_along_axis(x, order[..., None], axis=2) * weights))(x)
  np.testing.assert_array_equal(custom, autodiff)


def test_angular_hash_properties():
  x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 32, 2, 8)), jnp.float32)
  key = jax.random.key(9)
  buckets = lsh.hash_vectors(x, key, 8, 3)
  assert buckets.shape == (2, 2, 3, 32) and int(buckets.min()) >= 0 and int(buckets.max()) < 8
  np.testing.assert_array_equal(lsh.hash_vectors(3.0 * x, key, 8, 3), buckets)  # scale-invariant: angles only
  np.testing.assert_array_equal(lsh.hash_vectors(-x, key, 8, 3), (buckets + 4) % 8)  # antipodes: half a turn
  factored = lsh.hash_vectors(x, key, (4, 6), 2)
  assert int(factored.max()) < 24 and len(np.unique(np.asarray(factored))) > 8
  assert lsh.default_n_buckets(1024, 64) == 32 and lsh.default_n_buckets(65536, 128) == (32, 32)


def test_same_key_same_output_and_buckets_passed_back():
  qk, v = _inputs(seed=6)
  kw = dict(n_hashes=2, n_buckets=4, chunk_len=4)
  first, buckets = lsh.lsh_attention(qk, v, jax.random.key(7), return_buckets=True, **kw)
  np.testing.assert_array_equal(lsh.lsh_attention(qk, v, jax.random.key(7), **kw), first)
  np.testing.assert_array_equal(lsh.lsh_attention(qk, v, None, buckets=buckets, **kw), first)
  other = lsh.lsh_attention(qk, v, jax.random.key(8), **kw)
  assert not np.allclose(other, first)


def test_local_attention_is_banded_attention():
  q, k = _inputs(seed=7, length=12)
  v, _ = _inputs(seed=8, length=12)
  mask = np.ones((2, 12), np.int32)
  mask[1, 9:] = 0
  for causal, before, after in ((False, 1, 1), (True, 1, 0)):
    out = lsh.local_attention(
      q, k, v, chunk_len=4, causal=causal, attention_mask=mask, n_chunks_before=before, n_chunks_after=after
    )
    chunk = np.arange(12) // 4
    allowed = (chunk[None, :] - chunk[:, None] >= -before) & (chunk[None, :] - chunk[:, None] <= after)
    allowed = allowed[None, None] & mask.astype(bool)[:, None, None, :]
    if causal:
      allowed &= np.tril(np.ones((12, 12), bool))
    logits = np.einsum("bind,bjnd->bnij", q, k) / 2.0
    probs, _ = _softmax_rows(np.where(allowed, logits, MASKED))
    expected = np.einsum("bnij,bjnd->bind", probs, v) * mask[:, :, None, None]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
  "kwargs,message",
  [
    (dict(n_buckets=5), "n_buckets: must be an even int"),
    (dict(n_buckets=(4, 3)), "n_buckets: must be an even int"),
    (dict(n_hashes=0), "n_hashes: must be an int >= 1"),
    (dict(chunk_len=5), "chunk_len: the length 16 is not a multiple of chunk_len 5"),
    (dict(n_chunks_before=-1), "n_chunks_before: must be an int >= 0"),
  ],
)
def test_bad_arguments_fail_in_one_line(kwargs, message):
  qk, v = _inputs()
  with pytest.raises(ValueError, match=message) as error:
    lsh.lsh_attention(qk, v, jax.random.key(0), **{**dict(n_hashes=1, n_buckets=4, chunk_len=4), **kwargs})
  assert "\n" not in str(error.value)


SHARDED = """
import jax, jax.numpy as jnp, numpy as np
from core import lsh, sharding
qk, v = (np.random.default_rng(i).normal(size=(8, 32, 2, 8)).astype(np.float32) for i in (0, 1))
mask = np.ones((8, 32), np.int32); mask[3, 20:] = 0
f = lambda qk, v, mask: lsh.lsh_attention(qk, v, jax.random.key(4), n_hashes=2, n_buckets=8, chunk_len=8,
                                          causal=True, attention_mask=mask)
mesh = sharding.make_mesh(8, 1)
rows = jax.sharding.NamedSharding(mesh, jax.P("data"))
sharded = jax.jit(f)(*(jax.device_put(x, rows) for x in (qk, v, mask)))
assert len(sharded.sharding.device_set) == 8, sharded.sharding
one = np.asarray(jax.jit(f)(*(jax.device_put(x, jax.devices()[0]) for x in (qk, v, mask))))
np.testing.assert_allclose(np.asarray(sharded), one, rtol=1e-6, atol=1e-6)
print("ok", jax.device_count())
"""


def test_batch_sharded_over_eight_devices_equals_one_device():
  env = {**os.environ, "PYTHONPATH": REPO, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  out = subprocess.run([sys.executable, "-c", SHARDED], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.split() == ["ok", "8"]
