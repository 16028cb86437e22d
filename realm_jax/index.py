"""The document index, refreshed inside the training loop, and the retrieval that feeds each batch.

REALM, arXiv 2002.08909 §3.3 ("we asynchronously refresh the MIPS index"; candidates chosen by a stale index, their
scores recomputed with fresh parameters) and §3.4 (the null document ∅ always a candidate; the document a query was
cut from never one); US 11,003,865 claim 1, steps 3-4 (embed every document of the corpus, build a search index,
find the top-k by maximum inner-product search).

`IndexRefresh` is a `core.train.HostHook`: every `refresh_every` steps, before the step's batch is drawn, it
re-embeds the whole corpus with the current document embedder (jitted, rows sharded over the mesh's data axis,
with a progress bar), keeps a copy of the query embedder of the same step, and rebuilds the search: exact
(`core.mips.exact_topk` on the device) or ScaNN (`core.scann_index.ScannIndex`, host). The data pipeline calls
`retrieve` on each batch, so the batch drawn right after a refresh is the first to use the new index. Its state
(document embeddings, the step they were made at, the query embedder copy) is saved in every checkpoint, so a resumed
run retrieves with exactly the index the killed run had. `staleness` = steps since the last refresh is logged.

Retrieval with the copy of the query embedder of the refresh (not the live one) is what the reference code does
(its example generator reads the same export as the index refresher), and it keeps the index self-consistent.
Shape suffixes: B queries, K = k + 1 candidates (∅ first), N documents, D projection size, Ld document length.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from core import mips
from core import scann_index
from core import sharding as sharding_lib
from core import train as train_lib
from realm_jax.data import NULL_DOC, DocumentRows

BACKENDS = ("exact", "scann")


class IndexRefresh(train_lib.HostHook):
  """Embeds the corpus every `refresh_every` steps and retrieves top-k candidates for each batch (module docstring).

  embed_documents(doc_params, ids_NxL, mask_NxL) -> docs_NxD and embed_query(query_params, ids_BxL, mask_BxL) ->
  query_BxD are pure functions of the embedders' params; `select(params)` returns (query_params, doc_params) from
  the model's full tree; `query_template` is a tree of the query params' shapes (the checkpointed copy).
  """

  name = "index"

  def __init__(
    self,
    documents: DocumentRows,
    *,
    embed_documents: Callable[..., jax.Array],
    embed_query: Callable[..., jax.Array],
    select: Callable[[Any], tuple[Any, Any]],
    query_template: Any,
    proj_size: int,
    k: int,
    refresh_every: int,
    backend: str = "exact",
    embed_batch: int = 256,
    mesh: jax.sharding.Mesh | None = None,
    progress: bool = True,
  ):
    if documents.size < 1:
      raise ValueError("the knowledge corpus is empty: nothing to index")
    if not 1 <= k < documents.size:
      raise ValueError(f"k: {k} must be in [1, {documents.size - 1}] (corpus of {documents.size} documents, the "
                       "query's own document excluded)")
    if refresh_every < 1:
      raise ValueError(f"refresh_every: must be >= 1, got {refresh_every}")
    if backend not in BACKENDS:
      raise ValueError(f"backend: unknown value {backend!r} (allowed: {', '.join(BACKENDS)})")
    self.documents, self.k, self.refresh_every, self.backend = documents, k, refresh_every, backend
    self.select, self.embed_batch, self.progress = select, embed_batch, progress
    self.mesh = mesh or sharding_lib.make_mesh()
    self._rows = sharding_lib.batch_sharding(self.mesh)
    self._embed_documents = jax.jit(embed_documents, in_shardings=(None, self._rows, self._rows))
    self._embed_query = jax.jit(embed_query)
    self.embeddings_NxD = np.zeros((documents.size, proj_size), np.float32)
    self.embedded_at = -1  # the step of the last refresh; -1 = never
    self.query_params = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), query_template)
    self.refreshes = 0  # re-embeddings of the corpus (a refresh with unchanged embedders is skipped, not counted)
    self._doc_params: Any = None  # the document embedder of the last re-embedding (host copy, not checkpointed)
    self.refresh_seconds_total = 0.0  # wall time spent refreshing in this process (the share of a run it costs)
    self._search: Any = None

  # --- HostHook -------------------------------------------------------------------------------------------------

  def before_step(self, step: int, params: Callable[[], Any]) -> dict[str, float]:
    metrics = {}
    if self.embedded_at < 0 or (step % self.refresh_every == 0 and step != self.embedded_at):
      started = time.perf_counter()
      if self.refresh(params(), step):
        metrics["refresh_seconds"] = time.perf_counter() - started
        self.refresh_seconds_total += metrics["refresh_seconds"]
        metrics["refresh_docs_per_second"] = self.documents.size / metrics["refresh_seconds"]
    metrics["index_staleness"] = float(step - self.embedded_at)
    return metrics

  def state(self) -> dict[str, Any]:
    return {
      "embeddings": self.embeddings_NxD,
      "embedded_at": np.asarray(self.embedded_at, np.int32),
      "query_embedder": self.query_params,
    }

  def restore(self, tree: dict[str, Any]) -> None:
    self.embeddings_NxD = np.asarray(tree["embeddings"], np.float32)
    self.embedded_at = int(tree["embedded_at"])
    self.query_params = jax.tree.map(np.asarray, tree["query_embedder"])
    self._doc_params = None  # the next refresh re-embeds (and reproduces these embeddings while nothing changed)
    self._search = None
    if self.embedded_at >= 0:
      self._build()

  # --- refresh and search ---------------------------------------------------------------------------------------

  def embed_corpus(self, doc_params: Any) -> np.ndarray:
    """Embed_doc(z) for every document (claim 1 step 3): docs_NxD, in batches of `embed_batch` rows (the last one
    padded), each jitted with its rows sharded over the mesh's data axis."""
    n, batch = self.documents.size, self.embed_batch
    shards = self.mesh.shape["data"]
    batch = max(shards, batch - batch % shards)
    out = np.zeros((n, self.embeddings_NxD.shape[1]), np.float32)
    for start in tqdm(range(0, n, batch), desc="embed corpus", disable=not self.progress, leave=False):
      ids, mask = self.documents.ids_NxL[start : start + batch], self.documents.mask_NxL[start : start + batch]
      rows = len(ids)
      if rows < batch:
        ids = np.pad(ids, ((0, batch - rows), (0, 0)))
        mask = np.pad(mask, ((0, batch - rows), (0, 0)))
      out[start : start + rows] = np.asarray(self._embed_documents(doc_params, ids, mask))[:rows]
    return out

  def refresh(self, params: Any, step: int) -> bool:
    """Re-embeds the corpus with `params`' document embedder, copies its query embedder, rebuilds the search.

    When neither embedder changed since the last refresh (e.g. while they wait for the reader to warm up) the
    re-embedding would reproduce the index exactly: it is skipped and only `embedded_at` moves, so the hook's
    state is the same as after a real refresh. Returns whether the corpus was re-embedded."""
    query_params, doc_params = (jax.tree.map(lambda x: np.array(jax.device_get(x)), p) for p in self.select(params))
    unchanged = self._doc_params is not None and all(
      jax.tree.leaves(jax.tree.map(np.array_equal, (query_params, doc_params), (self.query_params, self._doc_params)))
    )
    self.embedded_at = step
    if unchanged:
      return False
    self.embeddings_NxD = self.embed_corpus(doc_params)
    self.query_params, self._doc_params = query_params, doc_params
    self.refreshes += 1
    self._build()
    return True

  def _build(self) -> None:
    if self.backend == "scann":
      self._search = scann_index.ScannIndex.build(self.embeddings_NxD, k=min(self.k + 1, self.documents.size))
    else:
      self._search = jnp.asarray(self.embeddings_NxD)

  def embed_queries(self, query_ids_BxL: np.ndarray, query_mask_BxL: np.ndarray) -> np.ndarray:
    """Embed_input(x) with the query embedder of the last refresh (the one the index searches with): query_BxD."""
    return np.asarray(self._embed_query(self.query_params, query_ids_BxL, query_mask_BxL), np.float32)

  def search(self, query_ids_BxL: np.ndarray, query_mask_BxL: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k documents of each query by MIPS over the index (claim 1 step 4): (scores_Bxk, doc_ids_Bxk)."""
    if self._search is None:
      raise RuntimeError("the index is empty: call refresh() (the training loop does at step 0) first")
    query_BxD = self.embed_queries(query_ids_BxL, query_mask_BxL)
    if self.backend == "scann":
      return self._search.search(query_BxD, k)
    scores, ids = mips.exact_topk(query_BxD, self._search, k)
    return np.asarray(scores), np.asarray(ids)

  def retrieve(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Adds the candidates of each query: ∅ first, then its top-k documents with its own document (`source_doc`)
    removed (§3.4). New keys: candidate_docs_BxK (doc ids, NULL_DOC for ∅), candidate_ids_BxKxLd,
    candidate_mask_BxKxLd, candidate_valid_BxK, gold_hit_B (1 when a gold document is among the k) and
    gold_valid_B (1 when the query has a gold document)."""
    _, found_Bxk1 = self.search(batch["query_ids"], batch["query_mask"], min(self.k + 1, self.documents.size))
    source_B = batch["source_doc"]
    keep_Bxk1 = found_Bxk1 != source_B[:, None]
    # The first k kept per row: the source (at most once) is skipped, else the (k+1)-th neighbour is dropped.
    order_Bxk1 = np.argsort(~keep_Bxk1, axis=1, kind="stable")
    top_Bxk = np.take_along_axis(found_Bxk1, order_Bxk1, axis=1)[:, : self.k]
    docs_BxK = np.concatenate([np.full((len(top_Bxk), 1), NULL_DOC, np.int32), top_Bxk.astype(np.int32)], axis=1)
    ids, mask = self.documents.rows(docs_BxK)
    gold_BxG = batch.get("gold_docs", np.full((len(top_Bxk), 1), -1, np.int32))
    gold_hit_B = (top_Bxk[:, :, None] == gold_BxG[:, None, :]).any(axis=(1, 2)) & (gold_BxG >= 0).any(axis=1)
    return {
      **batch,
      "candidate_docs": docs_BxK,
      "candidate_ids": ids,
      "candidate_mask": mask,
      "candidate_valid": np.ones(docs_BxK.shape, np.float32),
      "gold_hit": gold_hit_B.astype(np.float32),
      "gold_valid": (gold_BxG >= 0).any(axis=1).astype(np.float32),
    }
