"""grain input pipelines: seeded shuffle, per-host sharding, sequence packing, batching, resumable state.

Iterators from `iter(dataset)` support `get_state()` / `set_state(state)` with JSON-serialisable states,
so a training loop can resume exactly. To save the iterator inside an orbax `CheckpointManager` next
to the train state, add it as the item named 'data' (see `iterator_checkpoint_args`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grain
import numpy as np
from grain import experimental as grain_experimental

BatchDict = dict[str, np.ndarray]
DATA_ITEM_NAME = "data"


def _shard(ds: grain.MapDataset, shard_index: int, shard_count: int) -> grain.MapDataset:
  if shard_count < 1 or not 0 <= shard_index < shard_count:
    raise ValueError(f"need 0 <= shard_index < shard_count, got {shard_index} of {shard_count}")
  return ds[shard_index::shard_count] if shard_count > 1 else ds


def _epochs(ds: grain.MapDataset, seed: int, shuffle: bool, num_epochs: int | None) -> grain.MapDataset:
  if shuffle:
    ds = ds.shuffle(seed=seed)
  if num_epochs is None or num_epochs > 1:
    ds = ds.repeat(num_epochs)  # reshuffles every epoch
  elif num_epochs < 1:
    raise ValueError(f"num_epochs must be >= 1 or None (forever), got {num_epochs}")
  return ds


def _tuplify_pack_state(state: Any) -> Any:
  """Restores tuples that JSON turned into lists in ConcatThenSplit's state.

  grain 0.2.18 compares `remainder_slices` entries with the tuple (-1, -1); after a JSON round trip
  (what grain.checkpoint writes) they are lists and an empty remainder would be misread.
  """
  if isinstance(state, dict):
    out = {}
    for key, value in state.items():
      if key == "remainder_slices" and isinstance(value, dict):
        out[key] = {k: tuple(v) for k, v in value.items()}
      else:
        out[key] = _tuplify_pack_state(value)
    return out
  if isinstance(state, list):
    return [_tuplify_pack_state(v) for v in state]
  return state


class _JsonStateIterator(grain.DatasetIterator):
  """Pass-through iterator whose `set_state` accepts JSON-decoded states."""

  def __init__(self, parent: grain.DatasetIterator):
    super().__init__(parent)

  def __next__(self):
    return next(self._parent)

  def get_state(self) -> dict[str, Any]:
    return self._parent.get_state()

  def set_state(self, state: dict[str, Any]) -> None:
    self._parent.set_state(_tuplify_pack_state(state))


class _JsonStateIterDataset(grain.IterDataset):
  def __init__(self, parent: grain.IterDataset):
    super().__init__(parent)

  def __iter__(self) -> grain.DatasetIterator:
    return _JsonStateIterator(self._parent.__iter__())


def _bert_row(seq_len: int, cls_id: int, sep_id: int, pad_id: int):
  """Wraps a packed row of seq_len - 2 tokens as [CLS] tokens [SEP] [PAD]...."""

  def finish(packed: Mapping[str, np.ndarray]) -> BatchDict:
    segments = packed["tokens_segment_ids"]
    n = int(np.count_nonzero(segments))
    input_ids = np.full((seq_len,), pad_id, np.int32)
    input_ids[0], input_ids[n + 1] = cls_id, sep_id
    input_ids[1 : n + 1] = packed["tokens"][:n]
    attention_mask = np.zeros((seq_len,), np.int32)
    attention_mask[: n + 2] = 1
    segment_ids = np.zeros((seq_len,), np.int32)
    segment_ids[1 : n + 1] = segments[:n]
    segment_ids[0], segment_ids[n + 1] = segments[0], segments[n - 1]
    return {
      "input_ids": input_ids,
      "attention_mask": attention_mask,
      "token_type_ids": np.zeros((seq_len,), np.int32),
      "segment_ids": segment_ids,
      "positions": np.arange(seq_len, dtype=np.int32) * attention_mask,
    }

  return finish


def _plain_row(pad_id: int):
  """A packed row as is: documents concatenated, positions restarting at each document."""

  def finish(packed: Mapping[str, np.ndarray]) -> BatchDict:
    segments = packed["tokens_segment_ids"].astype(np.int32)
    mask = (segments > 0).astype(np.int32)
    input_ids = np.where(mask > 0, packed["tokens"], pad_id).astype(np.int32)
    return {
      "input_ids": input_ids,
      "attention_mask": mask,
      "token_type_ids": np.zeros_like(input_ids),
      "segment_ids": segments,
      "positions": packed["tokens_positions"].astype(np.int32),
    }

  return finish


def lazy_documents(source: Sequence[Any], tokenize: Callable[[Any], Sequence[int]]) -> grain.MapDataset:
  """Documents tokenized when they are read: `source` is any random-access sequence (a tfds array_record source,
  a list) and `tokenize(record)` gives one document's ids. Nothing is tokenized up front and memory stays bounded
  by grain's buffers, so `lm_dataset` streams a full Wikipedia / OpenWebText from disk. Slice the result
  (`docs[:n]`, `docs[n:]`) for held-out splits."""
  return grain.MapDataset.source(source).map(lambda record: np.asarray(tokenize(record), dtype=np.int32))


def lm_dataset(
  token_docs: Sequence[np.ndarray] | grain.MapDataset,
  seq_len: int,
  batch_size: int,
  seed: int,
  shard_index: int = 0,
  shard_count: int = 1,
  num_epochs: int | None = None,
  cls_id: int | None = None,
  sep_id: int | None = None,
  pad_id: int = 0,
  shuffle: bool = True,
) -> grain.IterDataset:
  """Packed language-model batches from tokenized documents (a list, or a lazy `lazy_documents` dataset).

  Documents are sharded (`token_docs[shard_index::shard_count]`, one shard per host), shuffled with
  `seed` (a new order each epoch), concatenated and split into rows of fixed length (grain
  ConcatThenSplit packing, no padding except the final row). With `cls_id` and `sep_id` each row is
  '[CLS] <seq_len - 2 tokens> [SEP]' (BERT / ELECTRA pre-training input); otherwise rows are plain
  `seq_len`-token windows (byte / causal LMs; append an EOS id to documents to mark boundaries).

  Yields dicts of int32 [batch_size, seq_len]: input_ids, attention_mask (1 on tokens),
  token_type_ids (zeros), segment_ids (1, 2, ... per document within a row, 0 on padding) and
  positions (position within the document piece for plain rows, within the row for [CLS]/[SEP]
  rows).
  The last incomplete batch is dropped. `num_epochs=None` repeats forever.
  """
  if (cls_id is None) != (sep_id is None):
    raise ValueError("give both cls_id and sep_id (BERT-style rows) or neither (plain rows)")
  bert_style = cls_id is not None
  body_len = seq_len - 2 if bert_style else seq_len
  if body_len < 1:
    raise ValueError(f"seq_len={seq_len} leaves no room for tokens")
  if isinstance(token_docs, grain.MapDataset):  # lazy (`lazy_documents`): empty documents are skipped when read
    if len(token_docs) == 0:
      raise ValueError("lm_dataset got no documents")
    ds = token_docs
  else:
    docs = [d for d in token_docs if len(d) > 0]
    if not docs:
      raise ValueError("lm_dataset got no non-empty documents")
    ds = grain.MapDataset.source(docs)
  ds = _epochs(_shard(ds, shard_index, shard_count), seed, shuffle, num_epochs)
  ds = ds.map(lambda doc: {"tokens": np.asarray(doc, dtype=np.int32)}).filter(lambda row: row["tokens"].size > 0)
  it = grain_experimental.ConcatThenSplitIterDataset(ds.to_iter_dataset(), length_struct={"tokens": body_len})
  finish = _bert_row(seq_len, cls_id, sep_id, pad_id) if bert_style else _plain_row(pad_id)
  it = it.map(finish).batch(batch_size, drop_remainder=True)
  return _JsonStateIterDataset(it)


def take_host_rows(dataset: grain.IterDataset, shard_index: int, shard_count: int) -> grain.IterDataset:
  """Keeps this host's contiguous rows [i·B/n, (i+1)·B/n) of every global batch.

  Every host reads the same global stream, so the global batch is identical for any number of processes (a run
  on 2 hosts reproduces a 1-host run exactly). Each host pays for reading everything; at pod scale shard the
  documents instead (`lm_dataset(shard_index=..., shard_count=...)`).
  """

  def rows(batch: BatchDict) -> BatchDict:
    size = len(next(iter(batch.values())))
    if size % shard_count:
      raise ValueError(f"global batch {size} is not divisible by {shard_count} hosts")
    local = size // shard_count
    return {k: v[shard_index * local : (shard_index + 1) * local] for k, v in batch.items()}

  return dataset.map(rows)


def host_lm_dataset(
  token_docs: Sequence[np.ndarray],
  seq_len: int,
  global_batch_size: int,
  seed: int,
  shard_index: int,
  shard_count: int,
  shard_by: str = "rows",
  **row_ids: Any,
) -> grain.IterDataset:
  """This process's part of the global packed-LM stream: `rows` (every host reads the same stream, keeps its rows:
  identical batches for any host count) or `documents` (each host packs its own documents)."""
  if shard_by not in ("rows", "documents"):
    raise ValueError(f"shard_by: unknown value {shard_by!r} (allowed: rows, documents)")
  if shard_by == "rows":
    dataset = lm_dataset(token_docs, seq_len=seq_len, batch_size=global_batch_size, seed=seed, **row_ids)
    return take_host_rows(dataset, shard_index, shard_count)
  return lm_dataset(
    token_docs,
    seq_len=seq_len,
    batch_size=global_batch_size // shard_count,
    seed=seed,
    shard_index=shard_index,
    shard_count=shard_count,
    **row_ids,
  )


def classification_dataset(
  features: Mapping[str, np.ndarray],
  labels: np.ndarray,
  batch_size: int,
  seed: int,
  shuffle: bool = True,
  num_epochs: int | None = 1,
  drop_remainder: bool = False,
  shard_index: int = 0,
  shard_count: int = 1,
) -> grain.IterDataset:
  """Batches of fixed-size examples: `features` arrays share the leading dimension N with `labels`.

  Yields dicts with every feature key plus 'label', stacked to [batch, ...]. Examples are sharded by
  index (`shard_index::shard_count`), shuffled with `seed` (a new order each epoch) and batched; with
  `drop_remainder=False` the last batch of a finite run may be smaller.
  """
  labels = np.asarray(labels)
  arrays = {k: np.asarray(v) for k, v in features.items()}
  if "label" in arrays:
    raise ValueError("'label' is reserved for the labels array")
  for key, value in arrays.items():
    if len(value) != len(labels):
      raise ValueError(f"feature {key!r} has {len(value)} rows but labels has {len(labels)}")
  ds = _shard(grain.MapDataset.range(len(labels)), shard_index, shard_count)
  ds = _epochs(ds, seed, shuffle, num_epochs)

  def gather(index: int) -> BatchDict:
    example = {k: v[index] for k, v in arrays.items()}
    example["label"] = labels[index]
    return example

  return _JsonStateIterDataset(ds.map(gather).to_iter_dataset().batch(batch_size, drop_remainder=drop_remainder))


def iterator_checkpoint_args(iterator: grain.DatasetIterator):
  """orbax save args for a grain iterator: use as item 'data' of a composite checkpoint.

    mngr = ocp.CheckpointManager(workdir / 'checkpoints')
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(train_state), data=iterator_checkpoint_args(it)))
    restored = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), data=iterator_restore_args(it)))
    # `it` now continues where the saved one stopped (restored['data'] is `it`).

  Each process writes its own state file `data/process_<i>-of-<n>.json` (grain.checkpoint handler).
  """
  import grain.checkpoint as grain_checkpoint  # pylint: disable=g-import-not-at-top

  return grain_checkpoint.CheckpointSave(iterator)


def iterator_restore_args(iterator: grain.DatasetIterator):
  """orbax restore args that set `iterator`'s state from item 'data' (see iterator_checkpoint_args)."""
  import grain.checkpoint as grain_checkpoint  # pylint: disable=g-import-not-at-top

  return grain_checkpoint.CheckpointRestore(iterator)
