"""The refreshed index (REALM §3.3-3.4): ∅ always first, the source document never a candidate, refreshes on schedule
and not before, exact and ScaNN search agree, one-line errors for bad arguments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from realm_jax import data as data_lib
from realm_jax import index as index_lib

N, D, LD = 40, 8, 6


def _documents():
  ids = np.zeros((N, LD), np.int32)
  ids[:, 0], ids[:, 1], ids[:, 2] = 2, 10 + np.arange(N), 3
  mask = (ids > 0).astype(np.int32)
  null = np.array([2, 3, 3, 0, 0, 0], np.int32)
  return data_lib.DocumentRows(ids, mask, null, (null > 0).astype(np.int32))


def _embed(table, ids, mask):
  """A stand-in embedder: the row of `table` for the token after [CLS] (doc i and a query naming doc i agree)."""
  del mask
  return table[ids[:, 1]]


def _table(seed):
  x = np.random.default_rng(seed).normal(size=(10 + N, D)).astype(np.float32)
  return jnp.asarray(x / np.linalg.norm(x, axis=1, keepdims=True))


def _hook(k=3, refresh_every=2, backend="exact"):
  return index_lib.IndexRefresh(
    _documents(),
    embed_documents=_embed,
    embed_query=_embed,
    select=lambda params: (params["table"], params["table"]),
    query_template=jax.ShapeDtypeStruct((10 + N, D), jnp.float32),
    proj_size=D,
    k=k,
    refresh_every=refresh_every,
    backend=backend,
    embed_batch=16,
    progress=False,
  )


def _queries(doc_ids, source=None):
  ids = np.zeros((len(doc_ids), 4), np.int32)
  ids[:, 0], ids[:, 1], ids[:, 2] = 2, 10 + np.asarray(doc_ids), 3
  source = np.asarray(doc_ids if source is None else source, np.int32)
  return {"query_ids": ids, "query_mask": (ids > 0).astype(np.int32), "source_doc": source,
          "gold_docs": np.asarray(doc_ids, np.int32)[:, None]}


def test_null_first_and_the_source_document_never_retrieved():
  hook = _hook(k=3)
  hook.before_step(0, lambda: {"table": _table(0)})
  docs = list(range(N))
  # The query names its own source document: the best match, and excluded.
  out = hook.retrieve(_queries(docs))
  assert out["candidate_docs"].shape == (N, 4)
  assert (out["candidate_docs"][:, 0] == data_lib.NULL_DOC).all()
  assert not (out["candidate_docs"][:, 1:] == np.arange(N)[:, None]).any()
  np.testing.assert_array_equal(out["candidate_ids"][:, 0], np.broadcast_to(hook.documents.null_ids_L, (N, LD)))
  assert out["gold_hit"].sum() == 0  # gold = source here, so never among the candidates
  # With another source the named document comes first, and the candidates are the exact top-k by inner product.
  out = hook.retrieve(_queries(docs, source=(np.arange(N) + 1) % N))
  np.testing.assert_array_equal(out["candidate_docs"][:, 1], np.arange(N))
  assert out["gold_hit"].mean() == 1.0
  table = np.asarray(_table(0))
  scores = table[10:][np.arange(N)] @ table[10:].T
  for q in range(N):
    order = [d for d in np.argsort(-scores[q], kind="stable") if d != (q + 1) % N][:3]
    np.testing.assert_array_equal(out["candidate_docs"][q, 1:], order)
  rows_ids, _ = hook.documents.rows(out["candidate_docs"][:, 1:])
  np.testing.assert_array_equal(out["candidate_ids"][:, 1:], rows_ids)


def test_refresh_happens_on_schedule_and_not_before():
  hook = _hook(refresh_every=3)
  queries = _queries(range(N), source=(np.arange(N) + 1) % N)
  assert hook.before_step(0, lambda: {"table": _table(0)})["index_staleness"] == 0.0
  before = hook.retrieve(queries)["candidate_docs"]
  # The embedders change at step 1, but the index keeps the step-0 embeddings (and query embedder) until step 3.
  for step in (1, 2):
    metrics = hook.before_step(step, lambda: {"table": _table(1)})
    assert metrics["index_staleness"] == step and "refresh_seconds" not in metrics
    np.testing.assert_array_equal(hook.retrieve(queries)["candidate_docs"], before)
  metrics = hook.before_step(3, lambda: {"table": _table(1)})
  assert metrics["index_staleness"] == 0.0 and metrics["refresh_seconds"] > 0
  after = hook.retrieve(queries)["candidate_docs"]
  assert not np.array_equal(after, before)
  np.testing.assert_allclose(hook.embeddings_NxD, np.asarray(_table(1))[10:], rtol=1e-6)
  assert hook.refreshes == 2 and hook.embedded_at == 3


def test_refresh_with_unchanged_embedders_skips_the_re_embedding():
  hook = _hook(refresh_every=2)
  hook.before_step(0, lambda: {"table": _table(0)})
  embedded = hook.embeddings_NxD.copy()
  metrics = hook.before_step(2, lambda: {"table": _table(0)})  # the embedders did not move (e.g. a warm-up delay)
  assert hook.refreshes == 1 and hook.embedded_at == 2 and metrics["index_staleness"] == 0.0
  assert "refresh_seconds" not in metrics
  np.testing.assert_array_equal(hook.embeddings_NxD, embedded)
  np.testing.assert_array_equal(hook.embed_corpus(_table(0)), embedded)  # what re-embedding would have given
  metrics = hook.before_step(4, lambda: {"table": _table(1)})  # they moved: a real refresh
  assert hook.refreshes == 2 and metrics["refresh_seconds"] > 0
  assert not np.array_equal(hook.embeddings_NxD, embedded)


def test_state_round_trip_restores_the_same_retrieval():
  hook = _hook()
  hook.before_step(0, lambda: {"table": _table(2)})
  queries = _queries(range(N), source=(np.arange(N) + 5) % N)
  expected = hook.retrieve(queries)["candidate_docs"]
  fresh = _hook()
  template = fresh.state()
  assert jax.tree.map(np.shape, template) == jax.tree.map(np.shape, hook.state())
  fresh.restore(jax.tree.map(np.copy, hook.state()))
  np.testing.assert_array_equal(fresh.retrieve(queries)["candidate_docs"], expected)
  assert fresh.before_step(1, lambda: {"table": _table(3)})["index_staleness"] == 1.0  # no refresh on resume


def test_scann_backend_matches_exact_search_on_a_small_corpus():
  exact, scann = _hook(k=5), _hook(k=5, backend="scann")
  for hook in (exact, scann):
    hook.before_step(0, lambda: {"table": _table(4)})
  queries = _queries(range(N), source=(np.arange(N) + 1) % N)
  np.testing.assert_array_equal(scann.retrieve(queries)["candidate_docs"], exact.retrieve(queries)["candidate_docs"])


def test_empty_index_refuses_to_search():
  with pytest.raises(RuntimeError, match="the index is empty"):
    _hook().retrieve(_queries([0]))


@pytest.mark.parametrize(
  "kwargs, message",
  [
    (dict(k=N), r"^k: 40 must be in \[1, 39\]"),
    (dict(k=0), r"^k: 0 must be in"),
    (dict(refresh_every=0), r"^refresh_every: must be >= 1, got 0$"),
    (dict(backend="faiss"), r"^backend: unknown value 'faiss' \(allowed: exact, scann\)$"),
  ],
)
def test_bad_arguments_are_one_line_errors(kwargs, message):
  with pytest.raises(ValueError, match=message):
    _hook(**kwargs)


def test_empty_corpus_is_a_one_line_error():
  with pytest.raises(ValueError, match="^the knowledge corpus is empty"):
    data_lib.document_rows(None, [], 8)
