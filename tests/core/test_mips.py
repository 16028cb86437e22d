"""Tests for core.mips: exact / sharded top-k against numpy, ScaNN recall and round trip, errors."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from core import mips
from core import scann_index

REPO_ROOT = Path(__file__).resolve().parents[2]


def _numpy_topk(query_QxD, database_NxD, k):
  scores_QxN = query_QxD.astype(np.float64) @ database_NxD.astype(np.float64).T
  idx_QxK = np.argsort(-scores_QxN, axis=1, kind="stable")[:, :k]
  return np.take_along_axis(scores_QxN, idx_QxK, axis=1), idx_QxK


# One (rows, dim, clusters) for every clustered_vectors call here: one compile. 5,000 rows are above
# brute_force_below, so the index is a tree + AH one.
ROWS, QUERIES, DIM, CLUSTERS = 5_000, 200, 64, 200


@pytest.fixture(scope="module")
def clustered():
  x_NxD = mips.clustered_vectors(1, ROWS + QUERIES, DIM, CLUSTERS, 1.0)
  return x_NxD[:ROWS], x_NxD[ROWS:]


@pytest.mark.parametrize("query_chunk", [None, 7, 1000])
def test_exact_topk_matches_numpy(query_chunk):
  rng = np.random.default_rng(0)
  query_QxD = rng.normal(size=(37, 16)).astype(np.float32)
  database_NxD = rng.normal(size=(501, 16)).astype(np.float32)
  scores, idx = mips.exact_topk(query_QxD, database_NxD, 5, query_chunk=query_chunk)
  ref_scores, ref_idx = _numpy_topk(query_QxD, database_NxD, 5)
  assert scores.shape == (37, 5) and scores.dtype == np.float32 and idx.dtype == np.int32
  np.testing.assert_array_equal(np.asarray(idx), ref_idx)
  np.testing.assert_allclose(np.asarray(scores), ref_scores, rtol=1e-5, atol=1e-5)


def test_exact_topk_k_equals_n_and_bf16():
  rng = np.random.default_rng(1)
  query_QxD = rng.normal(size=(4, 8)).astype(np.float32)
  database_NxD = rng.normal(size=(6, 8)).astype(np.float32)
  _, idx = mips.exact_topk(query_QxD, database_NxD, 6)
  np.testing.assert_array_equal(np.asarray(idx), _numpy_topk(query_QxD, database_NxD, 6)[1])
  scores, _ = mips.exact_topk(query_QxD.astype(jax.numpy.bfloat16), database_NxD.astype(jax.numpy.bfloat16), 3)
  assert scores.dtype == np.float32


def test_two_stage_topk_matches_numpy():
  # N=5,000 in tiles of 1,024 rows (4 tiles + a 904-row tail): several tiles and groups, k below and above a group.
  rng = np.random.default_rng(4)
  query_QxD = rng.normal(size=(50, 16)).astype(np.float32)
  database_NxD = rng.normal(size=(5000, 16)).astype(np.float32)
  for k, group, chunk in [(10, 16, None), (40, 8, 7), (1, 4, None)]:
    assert mips._uses_two_stage(5000, k, 1024, group)
    scores, idx = mips.exact_topk(query_QxD, database_NxD, k, tile_rows=1024, group=group, query_chunk=chunk)
    ref_scores, ref_idx = _numpy_topk(query_QxD, database_NxD, k)
    np.testing.assert_array_equal(np.asarray(idx), ref_idx, err_msg=f"k={k} group={group}")
    np.testing.assert_allclose(np.asarray(scores), ref_scores, rtol=1e-5, atol=1e-5)
  # Many exact ties (integer vectors): the lower index wins, as in a stable argsort and the one-stage path.
  query_QxD = rng.integers(-2, 3, size=(20, 4)).astype(np.float32)
  database_NxD = rng.integers(-2, 3, size=(5000, 4)).astype(np.float32)
  _, idx = mips.exact_topk(query_QxD, database_NxD, 40, tile_rows=1024, group=16)
  np.testing.assert_array_equal(np.asarray(idx), _numpy_topk(query_QxD, database_NxD, 40)[1])
  np.testing.assert_array_equal(np.asarray(idx), np.asarray(mips._one_stage_exact_topk(query_QxD, database_NxD, 40)[1]))
  # Sharded over a 1-device mesh, N=5,000 >= the default 4,096-row tile: the two-stage path per shard.
  _, idx = mips.sharded_exact_topk(query_QxD[:, :4], database_NxD, 10, jax.make_mesh((1,), ("data",)))
  np.testing.assert_array_equal(np.asarray(idx), _numpy_topk(query_QxD, database_NxD, 10)[1])
  with pytest.raises(ValueError, match="tile_rows=0"):
    mips.exact_topk(query_QxD, database_NxD, 1, tile_rows=0)


def test_sharded_single_device_matches_exact():
  rng = np.random.default_rng(2)
  query_QxD = rng.normal(size=(9, 16)).astype(np.float32)
  database_NxD = rng.normal(size=(103, 16)).astype(np.float32)
  mesh = jax.make_mesh((1,), ("data",))
  scores, idx = mips.sharded_exact_topk(query_QxD, database_NxD, 4, mesh)
  ref_scores, ref_idx = mips.exact_topk(query_QxD, database_NxD, 4)
  np.testing.assert_array_equal(np.asarray(idx), np.asarray(ref_idx))
  np.testing.assert_allclose(np.asarray(scores), np.asarray(ref_scores), rtol=1e-6)


_SHARDED_SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from core import mips
    assert jax.device_count() == 8, jax.devices()
    mesh = jax.make_mesh((8,), ('data',))
    rng = np.random.default_rng(3)
    query_QxD = rng.normal(size=(33, 24)).astype(np.float32)
    for n, k, chunk in [(800, 10, None), (1001, 10, None), (1001, 7, 5), (13, 10, None), (8, 1, None)]:
      database_NxD = rng.normal(size=(n, 24)).astype(np.float32)
      scores, idx = mips.sharded_exact_topk(query_QxD, database_NxD, k, mesh, query_chunk=chunk)
      ref_scores, ref_idx = mips.exact_topk(query_QxD, database_NxD, k)
      assert len(scores.sharding.device_set) == 8
      np.testing.assert_array_equal(np.asarray(idx), np.asarray(ref_idx), err_msg=f'n={n}')
      np.testing.assert_allclose(np.asarray(scores), np.asarray(ref_scores), rtol=1e-5, atol=1e-6)
      assert int(np.asarray(idx).max()) < n
    # 2-D mesh: database sharded over 'data' only.
    mesh2 = jax.make_mesh((4, 2), ('data', 'model'))
    database_NxD = rng.normal(size=(999, 24)).astype(np.float32)
    _, idx = mips.sharded_exact_topk(query_QxD, database_NxD, 10, mesh2)
    np.testing.assert_array_equal(np.asarray(idx), np.asarray(mips.exact_topk(query_QxD, database_NxD, 10)[1]))
    # 4,097 rows per shard (5 padded on the last): the two-stage tiled path on every shard.
    database_NxD = rng.normal(size=(8 * 4096 + 3, 24)).astype(np.float32)
    _, idx = mips.sharded_exact_topk(query_QxD, database_NxD, 10, mesh)
    scores_QxN = query_QxD.astype(np.float64) @ database_NxD.astype(np.float64).T
    np.testing.assert_array_equal(np.asarray(idx), np.argsort(-scores_QxN, axis=1, kind='stable')[:, :10])
    print('SHARDED_OK')
""")


def test_sharded_eight_devices_matches_exact():
  env = dict(
    os.environ,
    XLA_FLAGS="--xla_force_host_platform_device_count=8",
    JAX_PLATFORMS="cpu",
    PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
  )
  proc = subprocess.run(
    [sys.executable, "-c", _SHARDED_SCRIPT], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
  )
  assert proc.returncode == 0 and "SHARDED_OK" in proc.stdout, proc.stdout + proc.stderr


def test_recall_at_k():
  exact = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
  assert mips.recall_at_k(exact, exact) == 1.0
  assert mips.recall_at_k(np.array([[3, 2, 9, 9], [8, 8, 8, 8]]), exact) == pytest.approx(0.25)


def test_clustered_vectors_normalised_and_deterministic(clustered):
  x = mips.clustered_vectors(5, ROWS + QUERIES, DIM, CLUSTERS, 0.3)
  assert x.shape == (ROWS + QUERIES, DIM) and x.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(x, mips.clustered_vectors(jax.random.key(5), ROWS + QUERIES, DIM, CLUSTERS, 0.3))
  assert not np.array_equal(x, np.concatenate(clustered))  # another seed and noise, other vectors


def test_scann_recall_and_save_load(clustered, tmp_path):
  database_NxD, query_QxD = clustered
  _, exact_idx = mips.exact_topk(query_QxD, database_NxD, 10)
  index = scann_index.ScannIndex.build(database_NxD, 10)
  assert index.meta["mode"] == "tree_ah" and len(index) == ROWS and index.dim == DIM
  scores, idx = index.search(query_QxD, 10)
  assert scores.shape == idx.shape == (QUERIES, 10)
  recall = mips.recall_at_k(idx, exact_idx)
  assert recall >= 0.95, recall
  # Scores are reordered exact inner products.
  np.testing.assert_allclose(scores, np.take_along_axis(query_QxD @ database_NxD.T, idx, axis=1), atol=1e-4)
  index.save(tmp_path / "index")
  loaded = scann_index.ScannIndex.load(tmp_path / "index")
  scores2, idx2 = loaded.search(query_QxD, 10)
  np.testing.assert_array_equal(idx2, idx)
  np.testing.assert_array_equal(scores2, scores)
  assert loaded.meta == index.meta
  _, idx_par = loaded.search(query_QxD, 10, parallel=True)
  np.testing.assert_array_equal(idx_par, idx)


def test_scann_search_overrides(clustered):
  database_NxD, query_QxD = clustered
  _, exact_idx = mips.exact_topk(query_QxD, database_NxD, 10)
  index = scann_index.ScannIndex.build(database_NxD, 10, num_leaves_to_search=2)
  recall_two = mips.recall_at_k(index.search(query_QxD)[1], exact_idx)
  _, idx_all = index.search(query_QxD, num_leaves_to_search=index.meta["num_leaves"], reorder=500)
  assert mips.recall_at_k(idx_all, exact_idx) > max(recall_two, 0.99)
  with pytest.raises(ValueError, match="reorder=0"):
    index.search(query_QxD, reorder=0)


def test_scann_brute_force_small(clustered):
  database_NxD, query_QxD = clustered[0][:500], clustered[1][:20]
  index = scann_index.ScannIndex.build(database_NxD, 5)
  assert index.meta["mode"] == "brute_force"
  _, idx = index.search(query_QxD, 5)
  assert mips.recall_at_k(idx, mips.exact_topk(query_QxD, database_NxD, 5)[1]) == 1.0


def test_errors(tmp_path):
  db = np.ones((10, 4), np.float32)
  with pytest.raises(ValueError, match="empty"):
    scann_index.ScannIndex.build(np.zeros((0, 4), np.float32), 1)
  with pytest.raises(ValueError, match="k=11"):
    scann_index.ScannIndex.build(db, 11)
  index = scann_index.ScannIndex.build(db, 3)
  with pytest.raises(ValueError, match="dimension mismatch"):
    index.search(np.ones((2, 5), np.float32))
  with pytest.raises(ValueError, match="k=11"):
    index.search(np.ones((2, 4), np.float32), 11)
  (tmp_path / "junk").mkdir()
  with pytest.raises(ValueError, match="not a saved ScannIndex"):
    scann_index.ScannIndex.load(tmp_path / "junk")
  with pytest.raises(ValueError, match="not a saved ScannIndex"):
    scann_index.ScannIndex.load(tmp_path / "missing")
  with pytest.raises(ValueError, match="empty"):
    mips.exact_topk(np.ones((2, 4), np.float32), np.zeros((0, 4), np.float32), 1)
  with pytest.raises(ValueError, match="k=11"):
    mips.exact_topk(np.ones((2, 4), np.float32), db, 11)
  with pytest.raises(ValueError, match="dimension mismatch"):
    mips.exact_topk(np.ones((2, 3), np.float32), db, 1)
  with pytest.raises(ValueError, match="no axis"):
    mips.sharded_exact_topk(np.ones((2, 4), np.float32), db, 1, jax.make_mesh((1,), ("model",)))
