"""Maximum inner-product search (MIPS): exact, sharded-exact and ScaNN.

REALM (Guu et al., 2020, arXiv:2002.08909) §3.3 retrieves the top-k documents by
MIPS over precomputed document embeddings, f(x, z) = Embed_input(x)^T Embed_doc(z).
This module provides exact top-k (one device or database sharded over a mesh), recall against it and clustered
test vectors; the ScaNN approximate index for the large-corpus case is `core.scann_index.ScannIndex`.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

# Upper bound on the fp32 score block materialised at once by the one-stage path (elements): 2**26 = 256 MB.
_SCORE_BUDGET = 1 << 26
# Two-stage path: database rows scored per tile, rows per group, and scores per (query chunk x tile) block.
# Measured on XLA:CPU (2 cores, 1M x 128, 1,024 queries, k=10) by benchmarks/realm/mips.py.
_TILE_ROWS = 4096
_GROUP = 32
_TILE_BUDGET = 1 << 22



def _check_inputs(query_QxD, database_NxD, k: int) -> None:
  if query_QxD.ndim != 2 or database_NxD.ndim != 2:
    raise ValueError(f"query and database must be 2-D, got shapes {query_QxD.shape} and {database_NxD.shape}")
  if query_QxD.shape[1] != database_NxD.shape[1]:
    raise ValueError(f"dimension mismatch: query D={query_QxD.shape[1]}, database D={database_NxD.shape[1]}")
  if database_NxD.shape[0] == 0:
    raise ValueError("database is empty")
  if not 1 <= k <= database_NxD.shape[0]:
    raise ValueError(f"k={k} must be in [1, N={database_NxD.shape[0]}]")


def _auto_chunk(num_queries: int, num_rows: int, query_chunk: int | None, budget: int = _SCORE_BUDGET) -> int:
  """Queries per block; balanced so padding of the last block is < number of blocks."""
  if query_chunk is None:
    query_chunk = max(1, budget // max(num_rows, 1))
  query_chunk = max(1, min(int(query_chunk), num_queries))
  num_blocks = -(-num_queries // query_chunk)
  return -(-num_queries // num_blocks)


def _uses_two_stage(num_rows: int, k: int, tile_rows: int, group: int) -> bool:
  """Two-stage pays off once the k·group rescored candidates are a small part of N (and one tile fits)."""
  return group >= 2 and tile_rows % group == 0 and num_rows >= max(tile_rows, 8 * k * group)


def _map_query_blocks(fn, query_QxD, query_chunk: int, k: int):
  """Applies fn(q_CxD) -> (scores_CxK, idx_CxK) to query blocks of query_chunk rows (last one zero-padded)."""
  num_queries, dim = query_QxD.shape
  num_blocks = -(-num_queries // query_chunk)
  if num_blocks == 1:
    return fn(query_QxD)
  pad = num_blocks * query_chunk - num_queries
  query_BxCxD = jnp.pad(query_QxD, ((0, pad), (0, 0))).reshape(num_blocks, query_chunk, dim)
  scores_BxCxK, idx_BxCxK = jax.lax.map(fn, query_BxCxD)
  return scores_BxCxK.reshape(-1, k)[:num_queries], idx_BxCxK.reshape(-1, k)[:num_queries]


def _one_stage_topk(query_QxD, database_NxD, k: int, query_chunk: int, num_valid=None, row_offset=0):
  """Top-k of fp32 scores q·d: a [query_chunk, N] score block, then `lax.top_k` over all N columns.

  Rows whose global index (row_offset + local index) is >= num_valid score -inf.
  """
  num_rows = database_NxD.shape[0]

  def block(q_CxD):
    scores_CxN = jnp.einsum("cd,nd->cn", q_CxD, database_NxD, preferred_element_type=jnp.float32)
    if num_valid is not None:
      valid_N = row_offset + jnp.arange(num_rows) < num_valid
      scores_CxN = jnp.where(valid_N[None, :], scores_CxN, -jnp.inf)
    return jax.lax.top_k(scores_CxN, k)

  return _map_query_blocks(block, query_QxD, query_chunk, k)


def _two_stage_topk(query_QxD, database_NxD, k: int, query_chunk: int, num_valid, row_offset, tile_rows, group):
  """Exact top-k in two stages, scanning the database tile_rows rows at a time.

  Stage 1: the max score of each group of `group` consecutive rows, written tile by tile into a
  [query_chunk, N / group] buffer, then one `lax.top_k` over it: the top-k groups hold the top-k rows (a row
  outside them is beaten by the k group maxima, each of which is a row; with ties broken towards the lower
  index, as `lax.top_k` does). Stage 2: the k·group rows of those groups, in ascending row order, are
  rescored (gathered rows, fp32) and reduced by one `lax.top_k`. The N mod tile_rows tail rows go through
  the one-stage path. Scores are never materialised beyond [query_chunk, tile_rows].
  """
  num_rows = database_NxD.shape[0]
  num_tiles = num_rows // tile_rows
  tail_start = num_tiles * tile_rows
  groups_per_tile = tile_rows // group
  num_groups = min(k, num_tiles * groups_per_tile)
  arange_G = jnp.arange(group, dtype=jnp.int32)

  def block(q_CxD):
    chunk = q_CxD.shape[0]

    def tile(t, groupmax_CxM):
      start = t * tile_rows
      db_RxD = jax.lax.dynamic_slice_in_dim(database_NxD, start, tile_rows, axis=0)
      scores_CxR = jnp.einsum("cd,nd->cn", q_CxD, db_RxD, preferred_element_type=jnp.float32)
      if num_valid is not None:
        valid_R = row_offset + start + jnp.arange(tile_rows) < num_valid
        scores_CxR = jnp.where(valid_R[None, :], scores_CxR, -jnp.inf)
      groupmax_CxH = scores_CxR.reshape(chunk, groups_per_tile, group).max(axis=2)
      return jax.lax.dynamic_update_slice_in_dim(groupmax_CxM, groupmax_CxH, t * groups_per_tile, axis=1)

    # One long top_k: XLA:CPU's TopK costs ~7x more per element on 128-wide rows than on 32K-wide ones.
    # Tile 0 outside the loop: the carry then has the database's type (device-varying under shard_map).
    groupmax_CxM = tile(0, jnp.zeros((chunk, num_tiles * groups_per_tile), jnp.float32))
    groupmax_CxM = jax.lax.fori_loop(1, num_tiles, tile, groupmax_CxM)
    _, group_Cxg = jax.lax.top_k(groupmax_CxM, num_groups)
    rows_CxP = (jnp.sort(group_Cxg, axis=1)[:, :, None] * group + arange_G).reshape(chunk, -1)
    cand_CxPxD = jnp.take(database_NxD, rows_CxP, axis=0, mode="clip")
    cand_CxP = jnp.einsum("cd,cpd->cp", q_CxD, cand_CxPxD, preferred_element_type=jnp.float32)
    if num_valid is not None:
      cand_CxP = jnp.where(row_offset + rows_CxP < num_valid, cand_CxP, -jnp.inf)
    scores_Cxk, pos_Cxk = jax.lax.top_k(cand_CxP, min(k, cand_CxP.shape[1]))
    idx_Cxk = jnp.take_along_axis(rows_CxP, pos_Cxk, axis=1)
    if tail_start < num_rows:
      tail_scores_Cxk, tail_idx_Cxk = _one_stage_topk(
        q_CxD, database_NxD[tail_start:], min(k, num_rows - tail_start), chunk, num_valid, row_offset + tail_start
      )
      scores_CxM = jnp.concatenate([scores_Cxk, tail_scores_Cxk], axis=1)
      idx_CxM = jnp.concatenate([idx_Cxk, tail_idx_Cxk + tail_start], axis=1)
      scores_Cxk, pos_Cxk = jax.lax.top_k(scores_CxM, k)
      idx_Cxk = jnp.take_along_axis(idx_CxM, pos_Cxk, axis=1)
    return scores_Cxk, idx_Cxk

  return _map_query_blocks(block, query_QxD, query_chunk, k)


def _blocked_topk(
  query_QxD, database_NxD, k: int, query_chunk: int, num_valid=None, row_offset=0, *, tile_rows=_TILE_ROWS, group=_GROUP
):
  """Top-k of fp32 scores q·d: two-stage tiled scan when N is large enough, else one `lax.top_k` over N.

  Rows whose global index (row_offset + local index) is >= num_valid score -inf. Indices are local.
  """
  if _uses_two_stage(database_NxD.shape[0], k, tile_rows, group):
    return _two_stage_topk(query_QxD, database_NxD, k, query_chunk, num_valid, row_offset, tile_rows, group)
  return _one_stage_topk(query_QxD, database_NxD, k, query_chunk, num_valid, row_offset)


def _query_chunk(num_queries: int, num_rows: int, k: int, query_chunk: int | None, tile_rows: int, group: int) -> int:
  if _uses_two_stage(num_rows, k, tile_rows, group):
    if query_chunk is None:  # a [chunk, tile_rows] score tile and a [chunk, N / group] group-max buffer
      query_chunk = max(1, min(_TILE_BUDGET // tile_rows, _SCORE_BUDGET * group // num_rows))
    return _auto_chunk(num_queries, tile_rows, query_chunk)
  return _auto_chunk(num_queries, num_rows, query_chunk)


@functools.partial(jax.jit, static_argnames=("k", "query_chunk", "tile_rows", "group"))
def _exact_topk_jit(query_QxD, database_NxD, k: int, query_chunk: int, tile_rows: int, group: int):
  return _blocked_topk(query_QxD, database_NxD, k, query_chunk, tile_rows=tile_rows, group=group)


@functools.partial(jax.jit, static_argnames=("k", "query_chunk"))
def _one_stage_topk_jit(query_QxD, database_NxD, k: int, query_chunk: int):
  return _one_stage_topk(query_QxD, database_NxD, k, query_chunk)


def _one_stage_exact_topk(query_QxD, database_NxD, k: int, *, query_chunk: int | None = None):
  """The former `exact_topk` (one `lax.top_k` over all N per query block), kept as a benchmark baseline."""
  query_QxD, database_NxD = jnp.asarray(query_QxD), jnp.asarray(database_NxD)
  _check_inputs(query_QxD, database_NxD, k)
  chunk = _auto_chunk(query_QxD.shape[0], database_NxD.shape[0], query_chunk)
  return _one_stage_topk_jit(query_QxD, database_NxD, k=int(k), query_chunk=chunk)


def exact_topk(
  query_QxD, database_NxD, k: int, *, query_chunk: int | None = None, tile_rows: int = _TILE_ROWS, group: int = _GROUP
):
  """Exact MIPS top-k (REALM §3.3): fp32 scores q·d, best k rows per query.

  For N >= max(tile_rows, 8·k·group) the database is scanned tile_rows rows at a time and reduced by an
  exact two-stage top-k (group maxima of `group` consecutive rows, the top-k groups, then the top-k of
  their k·group rescored rows); smaller N use one `lax.top_k` over all N. Ties go to the lower index.

  Args:
    query_QxD: queries [Q, D].
    database_NxD: database rows [N, D].
    k: neighbours per query, 1 <= k <= N.
    query_chunk: queries scored per block; None picks it so a block holds at most 2**22 scores and
      2**26 group maxima (two-stage, [query_chunk, tile_rows] and [query_chunk, N / group]) or 2**26
      scores (one-stage, [query_chunk, N]).
    tile_rows: database rows scored per tile in the two-stage path.
    group: rows per group in the two-stage path.

  Returns:
    (scores_QxK fp32, indices_QxK int32), best first.
  """
  query_QxD, database_NxD = jnp.asarray(query_QxD), jnp.asarray(database_NxD)
  _check_inputs(query_QxD, database_NxD, k)
  if tile_rows < 1 or group < 1:
    raise ValueError(f"tile_rows={tile_rows} and group={group} must be >= 1")
  chunk = _query_chunk(query_QxD.shape[0], database_NxD.shape[0], int(k), query_chunk, tile_rows, group)
  return _exact_topk_jit(
    query_QxD, database_NxD, k=int(k), query_chunk=chunk, tile_rows=int(tile_rows), group=int(group)
  )


@functools.partial(jax.jit, static_argnames=("k", "query_chunk", "mesh", "axis", "num_valid"))
def _sharded_topk_jit(query_QxD, database_NxD, k: int, query_chunk: int, mesh, axis: str, num_valid: int):
  num_shards = mesh.shape[axis]
  local_rows = database_NxD.shape[0] // num_shards
  local_k = min(k, local_rows)

  def local(q_QxD, db_local_nxD):
    offset = jax.lax.axis_index(axis) * local_rows
    scores_Qxk, idx_Qxk = _blocked_topk(q_QxD, db_local_nxD, local_k, query_chunk, num_valid, offset)
    idx_Qxk = idx_Qxk + offset
    # Merge: every device sees all shards' candidates [Q, num_shards * local_k].
    scores_QxM = jax.lax.all_gather(scores_Qxk, axis, axis=1, tiled=True, to="invarying")
    idx_QxM = jax.lax.all_gather(idx_Qxk, axis, axis=1, tiled=True, to="invarying")
    scores_QxK, pos_QxK = jax.lax.top_k(scores_QxM, k)
    return scores_QxK, jnp.take_along_axis(idx_QxM, pos_QxK, axis=1)

  return jax.shard_map(local, mesh=mesh, in_specs=(jax.P(), jax.P(axis, None)), out_specs=(jax.P(), jax.P()))(
    query_QxD, database_NxD
  )


def sharded_exact_topk(query_QxD, database_NxD, k: int, mesh, axis: str = "data", *, query_chunk: int | None = None):
  """Exact MIPS top-k with database rows sharded over `mesh` axis `axis` (REALM §3.3).

  Each device scores its rows and keeps a local top-k (`jax.shard_map`, the same one- or two-stage
  reduction as `exact_topk`); the candidates are all-gathered and merged by a final top-k, indices offset
  by the shard start. When N is not divisible by the number of shards, the database is padded with zero
  rows whose scores are forced to -inf, so they are never returned (k <= N).
  Equals `exact_topk` up to ties. Returns replicated (scores_QxK fp32, indices_QxK int32).
  """
  if axis not in mesh.shape:
    raise ValueError(f"mesh has no axis {axis!r}; axes are {tuple(mesh.shape)}")
  if not hasattr(query_QxD, "ndim"):
    query_QxD = np.asarray(query_QxD)
  if not hasattr(database_NxD, "ndim"):
    database_NxD = np.asarray(database_NxD)
  _check_inputs(query_QxD, database_NxD, k)
  num_rows = database_NxD.shape[0]
  num_shards = mesh.shape[axis]
  pad = (-num_rows) % num_shards
  if pad:
    xp = np if isinstance(database_NxD, np.ndarray) else jnp
    database_NxD = xp.pad(database_NxD, ((0, pad), (0, 0)))
  database_NxD = jax.device_put(database_NxD, jax.NamedSharding(mesh, jax.P(axis, None)))
  query_QxD = jax.device_put(query_QxD, jax.NamedSharding(mesh, jax.P()))
  local_rows = database_NxD.shape[0] // num_shards
  chunk = _query_chunk(query_QxD.shape[0], local_rows, min(int(k), local_rows), query_chunk, _TILE_ROWS, _GROUP)
  return _sharded_topk_jit(
    query_QxD, database_NxD, k=int(k), query_chunk=chunk, mesh=mesh, axis=axis, num_valid=num_rows
  )


def recall_at_k(approx_idx_QxK, exact_idx_QxK) -> float:
  """Mean over queries of |approx ∩ exact| / k, with k = exact_idx_QxK.shape[1]."""
  approx_idx_QxK, exact_idx_QxK = np.asarray(approx_idx_QxK), np.asarray(exact_idx_QxK)
  if approx_idx_QxK.ndim != 2 or exact_idx_QxK.ndim != 2 or approx_idx_QxK.shape[0] != exact_idx_QxK.shape[0]:
    raise ValueError(f"expected [Q, K] index arrays with equal Q, got {approx_idx_QxK.shape} and {exact_idx_QxK.shape}")
  k = exact_idx_QxK.shape[1]
  hits_QxK = (approx_idx_QxK[:, :, None] == exact_idx_QxK[:, None, :]).any(axis=1)
  return float(hits_QxK.sum(axis=1).mean() / k)


def clustered_vectors(key_or_seed, n: int, d: int, n_clusters: int, noise: float) -> np.ndarray:
  """n L2-normalised fp32 vectors [n, d] around n_clusters random unit centres.

  Each vector is centre + noise·g/sqrt(d), g ~ N(0, I), then normalised, so `noise` is
  roughly the perturbation norm relative to the unit centre. Returned as numpy (ScaNN input).
  """
  key = jax.random.key(key_or_seed) if isinstance(key_or_seed, (int, np.integer)) else key_or_seed
  return np.asarray(_clustered_vectors_jit(key, int(n), int(d), int(n_clusters), jnp.float32(noise)))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _clustered_vectors_jit(key, n: int, d: int, n_clusters: int, noise):
  k_centres, k_assign, k_noise = jax.random.split(key, 3)
  centres_CxD = jax.random.normal(k_centres, (n_clusters, d), jnp.float32)
  centres_CxD /= jnp.linalg.norm(centres_CxD, axis=1, keepdims=True)
  assign_N = jax.random.randint(k_assign, (n,), 0, n_clusters)
  x_NxD = centres_CxD[assign_N] + noise / math.sqrt(d) * jax.random.normal(k_noise, (n, d), jnp.float32)
  return x_NxD / jnp.linalg.norm(x_NxD, axis=1, keepdims=True)
