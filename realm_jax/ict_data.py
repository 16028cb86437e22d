"""Inverse Cloze Task examples: a sentence of a document as the pseudo-query, the rest of the document as its context.

ORQA, Lee et al. 2019, arXiv 1906.00300 §5 (ICT: given a sentence, predict its context, the inverse of a cloze; the
sentence is removed from the context 90% of the time, so the retriever learns more than word matching yet keeps
matching words when it can); REALM, arXiv 2002.08909 §3.4 "ICT warm start"; US 11,003,865 claim 1,
steps 2-3 (the input embedding and the document embedding functions this data trains).

Every example is a pure function of (seed, stream, epoch, document index) through `np.random.Generator`s seeded with
that tuple, never of the process history: which document, which sentence (`realm_jax.masking.sentence_bounds`),
whether it is removed. Batches come from a grain `MapDataset` over the batch number, so the iterator's state is one
integer that `core.train` checkpoints, and a resumed run reads exactly the batches the killed one would have.
Documents with a single sentence have no context left once their only sentence is the query: they are skipped
(WordNet glosses mostly are one sentence; every synthetic document has four). Host-side numpy, no jax.
Shape suffixes: B batch, Lq query length, Ld context / document length.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Sequence

import grain
import numpy as np

from realm_jax import masking
from realm_jax.corpora import Document

TRAIN_STREAM, EVAL_STREAM = 0, 1  # second word of every example seed: training and held-out draws are disjoint
EVAL_SEED = 1234  # the held-out split and its pseudo-queries are the same for every run seed
_READ_OPTIONS = grain.ReadOptions(num_threads=1, prefetch_buffer_size=4)  # tokenising is light; leave the cores


@dataclasses.dataclass(frozen=True)
class IctExample:
  doc_index: int
  query: str  # the pseudo-query: one sentence of the document
  context: str  # the document without that sentence (or with it, when not removed)
  sentence: tuple[int, int]  # the sentence's [start, end) characters in the document's text
  removed: bool


def has_pseudo_query(doc: Document) -> bool:
  """A document is an ICT example when it has >= 2 sentences (one to ask, one left as context)."""
  return len(masking.sentence_bounds(doc.text)) >= 2


def example_rng(seed: int, stream: int, *indices: int) -> np.random.Generator:
  return np.random.default_rng((seed, stream, *indices))


def ict_example(doc: Document, doc_index: int, rng: np.random.Generator, remove_probability: float) -> IctExample:
  """One sentence (uniform over `sentence_bounds`) as the query; removed from the context with the given probability
  (`rng.random() < p`: never for p = 0, always for p = 1). The context is re-joined with single spaces."""
  bounds = masking.sentence_bounds(doc.text)
  if len(bounds) < 2:
    raise ValueError(f"document {doc_index} has {len(bounds)} sentence(s); ICT needs >= 2")
  start, end = bounds[int(rng.integers(len(bounds)))]
  removed = bool(rng.random() < remove_probability)
  context = f"{doc.text[:start].rstrip()} {doc.text[end:].lstrip()}".strip() if removed else doc.text
  return IctExample(doc_index, doc.text[start:end], context, (start, end), removed)


def split_documents(documents: Sequence[Document], num_eval: int) -> tuple[np.ndarray, np.ndarray]:
  """(train, held-out) document indices: the documents with >= 2 sentences, `num_eval` of them held out by a fixed
  draw (`EVAL_SEED`). Held-out documents stay in the searched corpus but are never a training example."""
  eligible_N = np.array([i for i, doc in enumerate(documents) if has_pseudo_query(doc)], np.int64)
  if num_eval >= len(eligible_N):
    raise ValueError(f"eval.num_queries: {num_eval} >= the {len(eligible_N)} documents with >= 2 sentences")
  order_N = example_rng(EVAL_SEED, EVAL_STREAM).permutation(len(eligible_N))
  return np.sort(eligible_N[order_N[num_eval:]]), np.sort(eligible_N[order_N[:num_eval]])


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity (epoch_order's cache)
class IctData:
  """The ICT examples of a corpus and how they become token rows.

  Query rows are '[CLS] sentence [SEP]' (`query_len`), context rows '[CLS] title [SEP] context [SEP]' (`doc_len`),
  both padded, int32, with a 1/0 mask: the rows `realm_jax.data` builds for REALM's queries and documents.
  """

  documents: Sequence[Document]
  train_indices: np.ndarray  # int [T]: documents that are training examples
  eval_indices: np.ndarray  # int [Q]: held-out documents, one pseudo-query each
  tokenizer: object
  query_len: int
  doc_len: int
  remove_probability: float
  seed: int

  def rows(self, examples: Sequence[IctExample]) -> dict[str, np.ndarray]:
    """query_ids/query_mask [B, Lq], context_ids/context_mask [B, Ld], doc_index and removed [B]."""
    queries = self.tokenizer.encode_batch([e.query for e in examples], max_length=self.query_len)
    titles = [self.documents[e.doc_index].title for e in examples]
    contexts = self.tokenizer.encode_batch(titles, [e.context for e in examples], max_length=self.doc_len)
    return {
      "query_ids": queries["input_ids"],
      "query_mask": queries["attention_mask"],
      "context_ids": contexts["input_ids"],
      "context_mask": contexts["attention_mask"],
      "doc_index": np.array([e.doc_index for e in examples], np.int32),
      "removed": np.array([e.removed for e in examples], np.int32),
    }

  def train_example(self, epoch: int, doc_index: int) -> IctExample:
    rng = example_rng(self.seed, TRAIN_STREAM, epoch, doc_index)
    return ict_example(self.documents[doc_index], doc_index, rng, self.remove_probability)

  @functools.lru_cache(maxsize=2)  # noqa: B019 - a pure function of the epoch; caching cannot change a batch
  def epoch_order(self, epoch: int) -> np.ndarray:
    """The training documents in epoch `epoch`'s order: a permutation seeded with (seed, TRAIN_STREAM, epoch)."""
    return self.train_indices[example_rng(self.seed, TRAIN_STREAM, epoch).permutation(len(self.train_indices))]

  def train_batch(self, batch_index: int, batch_size: int, shard_index: int = 0, shard_count: int = 1):
    """This process's rows of global batch `batch_index`. Each epoch is cut into len(train) // batch_size batches
    (the remainder is dropped), so no document appears twice in a batch (its context would be a false negative)."""
    per_epoch = len(self.train_indices) // batch_size
    epoch, position = divmod(batch_index, per_epoch)
    local = batch_size // shard_count
    first = position * batch_size + shard_index * local
    docs_B = self.epoch_order(epoch)[first : first + local]
    return self.rows([self.train_example(epoch, int(i)) for i in docs_B])

  def dataset(self, batch_size: int, shard_index: int = 0, shard_count: int = 1) -> grain.IterDataset:
    """The endless training stream: batch b is `train_batch(b, ...)`; grain's iterator state is the next b."""
    if batch_size > len(self.train_indices):
      raise ValueError(f"train.batch_size: {batch_size} > the {len(self.train_indices)} training documents")
    if batch_size % shard_count:
      raise ValueError(f"train.batch_size: {batch_size} is not divisible by {shard_count} processes")
    batch = functools.partial(self.train_batch, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count)
    return grain.MapDataset.range(sys.maxsize).map(batch).to_iter_dataset(_READ_OPTIONS)

  def eval_examples(self) -> list[IctExample]:
    """The fixed held-out pseudo-queries: a sentence of each held-out document drawn with (EVAL_SEED, EVAL_STREAM,
    index). Nothing is removed: the searched corpus holds the whole document."""
    out = []
    for i in self.eval_indices:
      rng = example_rng(EVAL_SEED, EVAL_STREAM, int(i))
      out.append(ict_example(self.documents[int(i)], int(i), rng, remove_probability=0.0))
    return out


def eval_corpus(
  documents: Sequence[Document], eval_indices: np.ndarray, max_corpus: int
) -> tuple[list[Document], np.ndarray]:
  """The documents searched at evaluation (re-numbered 0..N-1) and each held-out document's id among them: all
  documents, or (max_corpus > 0) the held-out ones plus a fixed draw (`EVAL_SEED`) of the others, in corpus order."""
  n = len(documents)
  if not max_corpus or max_corpus >= n:
    keep_N = np.arange(n)
  else:
    others = np.setdiff1d(np.arange(n), eval_indices)
    extra = max(0, max_corpus - len(eval_indices))
    drawn = example_rng(EVAL_SEED, EVAL_STREAM, n).choice(len(others), size=min(extra, len(others)), replace=False)
    keep_N = np.sort(np.concatenate([eval_indices, others[drawn]]))
  corpus = [Document(j, documents[int(i)].title, documents[int(i)].text) for j, i in enumerate(keep_N)]
  return corpus, np.searchsorted(keep_N, eval_indices).astype(np.int32)


def wikipedia_blocks(source: Sequence[dict], block_words: int, max_docs: int) -> list[Document]:
  """Documents of a tfds Wikipedia source (records with 'title' and 'text'): each article cut into consecutive
  `block_words`-word blocks (ORQA's evidence blocks are <= 288 wordpieces), the first `max_docs` blocks (0 = all).
  The text is held in host memory (full Wikipedia: ~13M blocks, tens of GB)."""
  out: list[Document] = []
  for record in source:
    words = record["text"].split()
    for start in range(0, len(words), block_words):
      out.append(Document(len(out), record["title"], " ".join(words[start : start + block_words])))
      if max_docs and len(out) >= max_docs:
        return out
  return out
