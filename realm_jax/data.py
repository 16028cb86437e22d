"""Token rows for REALM: documents as '[CLS] title [SEP] text [SEP]', masked queries, and the null document.

REALM, arXiv 2002.08909 §3.4 (documents embedded with their title; the null document ∅ always among the candidates)
and US 11,003,865 claim 1, steps 1 and 3 (a masked language modelling task from a document's text; the corpus of
documents to embed). Rows are fixed-size int32 numpy arrays: `ids` and `mask` (1 = real token), padded with the
tokenizer's pad id, so the corpus embeds in jitted batches and join(x, z) (`realm_jax.model.join`) is a concatenation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from realm_jax import masking
from realm_jax.corpora import Document

NULL_DOC = -1  # candidate id of the null document ∅ (its row is '[CLS] [SEP] [SEP]': no title, no text)


@dataclasses.dataclass(frozen=True)
class DocumentRows:
  """The tokenised corpus: row i is document i (`Document.doc_id == i`)."""

  ids_NxL: np.ndarray  # int32 [N, Ld]
  mask_NxL: np.ndarray  # int32 [N, Ld]
  null_ids_L: np.ndarray  # int32 [Ld]: the null document's row
  null_mask_L: np.ndarray

  @property
  def size(self) -> int:
    return int(self.ids_NxL.shape[0])

  @property
  def length(self) -> int:
    return int(self.ids_NxL.shape[1])

  def rows(self, doc_ids_BxK: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, mask) [B, K, Ld] of the given documents; `NULL_DOC` gives the null document's row."""
    doc_ids_BxK = np.asarray(doc_ids_BxK)
    safe = np.maximum(doc_ids_BxK, 0)
    is_null = (doc_ids_BxK == NULL_DOC)[..., None]
    ids = np.where(is_null, self.null_ids_L, self.ids_NxL[safe])
    mask = np.where(is_null, self.null_mask_L, self.mask_NxL[safe])
    return ids.astype(np.int32), mask.astype(np.int32)


def document_rows(tokenizer, documents: Sequence[Document], doc_len: int, batch: int = 4096) -> DocumentRows:
  """'[CLS] title [SEP] text [SEP]' rows of `documents` (ids must be 0..N-1 in order), truncated to `doc_len`."""
  if not documents:
    raise ValueError("the knowledge corpus is empty: no documents to embed")
  for i, doc in enumerate(documents):
    if doc.doc_id != i:
      raise ValueError(f"document at position {i} has doc_id {doc.doc_id}; ids must be 0..N-1 in order")
  ids, mask = [], []
  for start in range(0, len(documents), batch):
    chunk = documents[start : start + batch]
    rows = tokenizer.encode_batch([d.title for d in chunk], [d.text for d in chunk], max_length=doc_len)
    ids.append(rows["input_ids"])
    mask.append(rows["attention_mask"])
  null_ids = np.full(doc_len, tokenizer.pad_id, np.int32)
  null_ids[:3] = (tokenizer.cls_id, tokenizer.sep_id, tokenizer.sep_id)
  null_mask = (np.arange(doc_len) < 3).astype(np.int32)
  return DocumentRows(np.concatenate(ids), np.concatenate(mask), null_ids, null_mask)


def query_row(tokens: masking.Tokens, query_len: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """(ids, mask) [query_len] of a '[CLS] x [SEP]' token sequence, padded; raises if it does not fit."""
  n = len(tokens.ids_L)
  if n > query_len:
    raise ValueError(f"query of {n} tokens does not fit query_len {query_len}")
  ids = np.full(query_len, pad_id, np.int32)
  ids[:n] = tokens.ids_L
  return ids, (np.arange(query_len) < n).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class QueryArrays:
  """Masked queries as fixed-size rows: what the pretraining batches and the held-out evaluation read.

  Row q: the masked query x ('[CLS] x [SEP]' with [MASK]s), the positions and original ids of its masked tokens
  (weights 0 on the unused slots of the M), the document it was cut from (never a candidate, §3.4) and its gold
  documents (those holding the answer; -1 pads; all -1 when unknown).
  """

  ids_QxL: np.ndarray  # int32 [Q, Lq]
  mask_QxL: np.ndarray  # int32 [Q, Lq]
  mask_positions_QxM: np.ndarray  # int32 [Q, M]
  mask_labels_QxM: np.ndarray  # int32 [Q, M]
  mask_weights_QxM: np.ndarray  # float32 [Q, M]
  source_doc_Q: np.ndarray  # int32 [Q]
  gold_docs_QxG: np.ndarray  # int32 [Q, G]

  @property
  def size(self) -> int:
    return int(self.ids_QxL.shape[0])

  def row(self, q: int) -> dict[str, np.ndarray]:
    return {
      "query_ids": self.ids_QxL[q],
      "query_mask": self.mask_QxL[q],
      "mask_positions": self.mask_positions_QxM[q],
      "mask_labels": self.mask_labels_QxM[q],
      "mask_weights": self.mask_weights_QxM[q],
      "source_doc": self.source_doc_Q[q],
      "gold_docs": self.gold_docs_QxG[q],
    }

  def batch(self, rows: Sequence[int]) -> dict[str, np.ndarray]:
    rows = np.asarray(rows)
    return {key: value[rows] for key, value in self.row(slice(None)).items()}  # type: ignore[arg-type]


def masked_queries(
  tokenizer,
  texts: Sequence[str],
  *,
  source_docs: Sequence[int],
  gold_docs: Sequence[Sequence[int]] | None = None,
  spans: Sequence[tuple[int, int] | None] | None = None,
  query_len: int,
  max_masks: int,
  kind: str = "salient_span",
  seed: int = 0,
  **masking_kwargs,
) -> QueryArrays:
  """Masks each text with `masking.MASKERS[kind]` (salient spans by default; a given character span masks exactly
  that span, e.g. the synthetic queries' attribute value) and packs the rows. Texts that end with no masked token
  (no salient span) are dropped. One seeded generator draws every choice in order: same inputs, same rows."""
  if kind not in masking.MASKERS:
    raise ValueError(f"masking kind must be one of {sorted(masking.MASKERS)}, got {kind!r}")
  if len(source_docs) != len(texts) or (gold_docs is not None and len(gold_docs) != len(texts)):
    raise ValueError(f"got {len(texts)} texts, {len(source_docs)} source ids and gold ids for each or none")
  rng = np.random.default_rng(seed)
  width = max([1] + [len(g) for g in gold_docs or ()])
  rows: dict[str, list] = {name: [] for name in ("ids", "mask", "pos", "lab", "w", "src", "gold")}
  for i, text in enumerate(texts):
    tokens = masking.tokenize_with_offsets(tokenizer, text, max_length=query_len)
    span = None if spans is None else spans[i]
    if span is not None:
      masked_L, labels_L = masking.salient_span_mask(tokens, rng, spans=[tuple(span)], **masking_kwargs)
    else:
      masked_L, labels_L = masking.MASKERS[kind](tokens, rng, **masking_kwargs)
    positions = np.flatnonzero(labels_L != masking.IGNORE_ID)[:max_masks]
    if not positions.size:
      continue
    ids, mask = query_row(dataclasses.replace(tokens, ids_L=masked_L), query_len, tokenizer.pad_id)
    pos = np.zeros(max_masks, np.int32)
    pos[: positions.size] = positions
    rows["ids"].append(ids)
    rows["mask"].append(mask)
    rows["pos"].append(pos)
    rows["lab"].append(np.where(np.arange(max_masks) < positions.size, labels_L[pos], 0).astype(np.int32))
    rows["w"].append((np.arange(max_masks) < positions.size).astype(np.float32))
    rows["src"].append(int(source_docs[i]))
    gold = np.full(width, -1, np.int32)
    if gold_docs is not None:
      gold[: len(gold_docs[i])] = gold_docs[i]
    rows["gold"].append(gold)
  if not rows["ids"]:
    raise ValueError(f"no query has a token to predict ({len(texts)} texts, masking {kind!r})")
  stack = {name: np.stack(values) for name, values in rows.items()}
  return QueryArrays(
    stack["ids"], stack["mask"], stack["pos"], stack["lab"], stack["w"], stack["src"].astype(np.int32), stack["gold"]
  )
