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
