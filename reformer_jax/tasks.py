"""Reformer's data: the duplication task, byte-level language modelling (bundled Wikipedia XML, enwik8), imagenet64.

Kitaev, Kaiser, Levskaya, arXiv 2001.04451 §5: "a synthetic task" (0w0w, L 1024, symbols 1..127), enwik8 (raw
Wikipedia XML bytes, 90M/5M/5M split) and imagenet64 (64·64·3 = 12,288 byte sequences). ListOps (Long Range Arena)
lives in `reformer_jax.listops`. US 10,909,461: no claim step (data only); these are the inputs on which the paper
evaluates the claim-1 system.

Every task is a grain `IterDataset` of numpy batches built by `indexed_batches`: batch b holds the global rows
b·G … b·G + G − 1 and every row is a pure function of (seed, split, row index), so the order is seeded, any host
count yields the same global batch (this process builds only its rows [i·G/n, (i+1)·G/n)), and the iterator state
({'next_index': batches consumed}) resumes exactly. `train_data(shard_index, shard_count)` of a `core.train.Task` is
one of these functions with its other arguments bound.

Batch schema (int32 unless stated):
  language modelling (duplication, char LM, imagenet64): input_ids [B, L]; attention_mask [B, L] (1 = real token);
    weights [B, L] float32, aligned with the *targets*: weights[t] = 1 when predicting input_ids[t] from the tokens
    before it counts in the loss (trax's loss_weights; position 0 is never predicted by a causal LM).
  ListOps: input_ids [B, L], attention_mask [B, L], label [B], weights [B] float32 (0 on the padding rows that fill
    the last eval batch).
"""

from __future__ import annotations

import bz2
import functools
import importlib
import math
import sys
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import grain
import numpy as np

from core.data import corpora, registry
from core.data.tokenizers import ByteTokenizer

BatchDict = dict[str, np.ndarray]
SPLITS = ("train", "validation", "test")  # row streams seeded with (seed, split id, row index): disjoint per split
BYTE_OFFSET = ByteTokenizer.NUM_SPECIAL  # byte b has id b + 3 (ids 0, 1, 2: pad, bos, eos)
ENWIK8_BYTES = 100_000_000
IMAGENET64_NAME = "downsampled_imagenet/64x64"
IMAGENET64_MODULE = "tensorflow_datasets.datasets.downsampled_imagenet.downsampled_imagenet_dataset_builder"
# Examples are cheap numpy work: two threads and a short buffer keep the prefetch from competing with the train step.
_READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=8)


def check_int(name: str, value: int, minimum: int) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"{name}: must be an int >= {minimum}, got {value!r}")


def split_id(split: str) -> int:
  """Index of `split` in SPLITS (the second word of every row's seed)."""
  if split not in SPLITS:
    raise ValueError(f"split: unknown value {split!r} (allowed: {', '.join(SPLITS)})")
  return SPLITS.index(split)


def row_rng(seed: int, split: str, index: int) -> np.random.Generator:
  """The generator of row `index` of `split`: np.random.default_rng((seed, split id, index))."""
  return np.random.default_rng((seed, split_id(split), index))


def indexed_batches(
  make_row: Callable[[int], BatchDict],
  global_batch_size: int,
  shard_index: int = 0,
  shard_count: int = 1,
  *,
  num_rows: int | None = None,
  order: grain.MapDataset | None = None,
  pad_row: BatchDict | None = None,
) -> grain.IterDataset:
  """Batches of rows made from their global row index; this process builds its slice of every global batch.

  make_row(k) -> dict of arrays for row k (k = order[r] for global row r when `order` is given, e.g. a seeded
  shuffle repeated per epoch; else k = r). num_rows None: infinite. Otherwise ceil(num_rows / G) batches and rows past
  the end are `pad_row`, so every batch has G rows (one compiled eval step; pad rows carry weight 0).
  """
  check_int("global_batch_size", global_batch_size, 1)
  if shard_count < 1 or not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index: need 0 <= shard_index < shard_count, got {shard_index} of {shard_count}")
  if global_batch_size % shard_count:
    raise ValueError(f"global_batch_size: {global_batch_size} is not divisible by {shard_count} hosts")
  if num_rows is not None:
    check_int("num_rows", num_rows, 1)
    if pad_row is None and num_rows % global_batch_size:
      raise ValueError(f"num_rows: {num_rows} is not a multiple of global_batch_size {global_batch_size}")
  local = global_batch_size // shard_count
  first = shard_index * local

  def batch(b: int) -> BatchDict:
    rows = []
    for j in range(local):
      r = b * global_batch_size + first + j
      if num_rows is not None and r >= num_rows:
        rows.append(pad_row)
      else:
        rows.append(make_row(int(order[r]) if order is not None else r))
    return {key: np.stack([row[key] for row in rows]) for key in rows[0]}

  num_batches = sys.maxsize if num_rows is None else math.ceil(num_rows / global_batch_size)
  return grain.MapDataset.range(num_batches).map(batch).to_iter_dataset(_READ_OPTIONS)


# -- duplication task (paper §5, Table 2) ---------------------------------------------------------------------------


def duplication_row(seed: int, index: int, length: int, vocab_size: int, split: str = "train") -> BatchDict:
  """Row `index` of the 0w0w task: w = length/2 − 1 symbols uniform in 1..vocab_size−1, input = [0, w, 0, w].

  Only the second copy of w is scored (weights 1 on positions length/2 + 1 … length − 1): predicting it needs the
  model to find the matching position one half back, which LSH attention must hash into the same bucket.
  """
  half = length // 2
  w = row_rng(seed, split, index).integers(1, vocab_size, size=half - 1, dtype=np.int32)
  zero = np.zeros(1, np.int32)
  weights = np.zeros(length, np.float32)
  weights[half + 1 :] = 1.0
  return {
    "input_ids": np.concatenate([zero, w, zero, w]),
    "attention_mask": np.ones(length, np.int32),
    "weights": weights,
  }


def duplication_dataset(
  length: int,
  vocab_size: int,
  global_batch_size: int,
  seed: int,
  shard_index: int = 0,
  shard_count: int = 1,
  *,
  split: str = "train",
  num_rows: int | None = None,
) -> grain.IterDataset:
  """Batches of `duplication_row`s: rows 0, 1, 2, … of `split` (infinite unless `num_rows`; the last batch of a
  finite split is filled with all-zero, weight-0 rows). Paper: length 1024, vocab_size 128."""
  if isinstance(length, bool) or not isinstance(length, int) or length < 4 or length % 2:
    raise ValueError(f"length: must be an even int >= 4 (0w0w with |w| = length/2 - 1), got {length!r}")
  check_int("vocab_size", vocab_size, 2)
  check_int("seed", seed, 0)
  split_id(split)
  return indexed_batches(
    lambda k: duplication_row(seed, k, length, vocab_size, split),
    global_batch_size,
    shard_index,
    shard_count,
    num_rows=num_rows,
    pad_row=_byte_row(np.zeros(0, np.uint8), length),  # all zeros, weight 0
  )


# -- byte-level language modelling (paper §5 enwik8) ----------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def wikipedia_xml_bytes(cache_dir: Path | str | None = None) -> bytes:
  """The bundled 6.09 MB MediaWiki XML excerpt (gensim test data), raw bytes as enwik8 holds them."""
  path = registry.fetch("gensim_test_data", cache_dir) / corpora.WIKIPEDIA_XML
  return bz2.decompress(path.read_bytes())


def enwik8_bytes(path: str | Path) -> bytes:
  """enwik8 (the first 10^8 bytes of the 2006 English Wikipedia XML dump) from a local `enwik8` file or `enwik8.zip`.

  tensorflow-datasets 4.9.10 has no enwik8 builder, so the file must be given by path.
  """
  path = Path(path)
  if not path.is_file():
    raise ValueError(f"data.path: enwik8 needs a local 'enwik8' file or 'enwik8.zip', {str(path)!r} is not a file")
  if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as archive:
      if "enwik8" not in archive.namelist():
        raise ValueError(f"data.path: {str(path)!r} holds no member 'enwik8' (has {archive.namelist()[:5]})")
      data = archive.read("enwik8")
  else:
    data = path.read_bytes()
  if len(data) != ENWIK8_BYTES:
    raise ValueError(f"data.path: enwik8 has {ENWIK8_BYTES:,} bytes, {str(path)!r} has {len(data):,}")
  return data


def split_bytes(data: bytes | np.ndarray) -> dict[str, np.ndarray]:
  """Train / validation / test = the first 90%, next 5%, last 5% of the bytes (enwik8: 90M / 5M / 5M), uint8."""
  array = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray)) else np.asarray(data, np.uint8)
  n = len(array)
  if n < 20:
    raise ValueError(f"data: need at least 20 bytes to split 90/5/5, got {n}")
  a, b = n * 9 // 10, n * 19 // 20
  return {"train": array[:a], "validation": array[a:b], "test": array[b:]}


def char_lm_splits(corpus: str, path: str | Path = "", cache_dir: Path | str | None = None) -> dict[str, np.ndarray]:
  """`split_bytes` of a byte corpus: 'wikipedia_xml' (bundled, CPU scale) or 'enwik8' (`path` to the file or zip)."""
  if corpus == "wikipedia_xml":
    return split_bytes(wikipedia_xml_bytes(cache_dir))
  if corpus == "enwik8":
    if not path:
      raise ValueError("data.path: enwik8 needs the path of a local 'enwik8' file or 'enwik8.zip' (no tfds builder)")
    return split_bytes(enwik8_bytes(path))
  raise ValueError(f"data.corpus: unknown value {corpus!r} (allowed: wikipedia_xml, enwik8)")


def _byte_row(piece: np.ndarray, seq_len: int) -> BatchDict:
  n = len(piece)
  input_ids = np.zeros(seq_len, np.int32)  # ByteTokenizer.PAD_ID after the end
  input_ids[:n] = piece.astype(np.int32) + BYTE_OFFSET
  mask = np.zeros(seq_len, np.int32)
  mask[:n] = 1
  return {"input_ids": input_ids, "attention_mask": mask, "weights": mask.astype(np.float32)}


def char_lm_dataset(
  data: np.ndarray,
  seq_len: int,
  global_batch_size: int,
  seed: int,
  shard_index: int = 0,
  shard_count: int = 1,
  *,
  train: bool = True,
  max_rows: int | None = None,
) -> grain.IterDataset:
  """Byte-LM batches of `seq_len` ids (byte + 3, `core.data.ByteTokenizer`) from one split's uint8 bytes.

  train: row k starts at a seeded random offset (row_rng(seed, 'train', k)), infinite. Eval (`train=False`): the
  split cut into contiguous non-overlapping rows, the last one padded (mask and weights 0), one pass; `max_rows`
  keeps the first rows only (a cheaper CPU evaluation).
  """
  data = np.asarray(data, np.uint8)
  check_int("seq_len", seq_len, 2)
  check_int("seed", seed, 0)
  if len(data) < seq_len + (0 if train else 1):
    raise ValueError(f"seq_len: {seq_len} is longer than the split's {len(data)} bytes")
  if train:
    high = len(data) - seq_len + 1

    def make_row(k: int) -> BatchDict:
      start = int(row_rng(seed, "train", k).integers(0, high))
      return _byte_row(data[start : start + seq_len], seq_len)

    return indexed_batches(make_row, global_batch_size, shard_index, shard_count)
  num_rows = math.ceil(len(data) / seq_len)
  if max_rows is not None:
    check_int("max_rows", max_rows, 1)
    num_rows = min(num_rows, max_rows)
  return indexed_batches(
    lambda k: _byte_row(data[k * seq_len : (k + 1) * seq_len], seq_len),
    global_batch_size,
    shard_index,
    shard_count,
    num_rows=num_rows,
    pad_row=_byte_row(data[:0], seq_len),
  )


# -- imagenet64 (paper §5; config only: the data is not on this machine) --------------------------------------------


def imagenet64_source(split: str = "train", data_dir: str | Path | None = None):
  """tfds `downsampled_imagenet/64x64` as a random-access source (prepared array_record in `data_dir`, no download).

  Splits: 'train' (1,281,167 images) and 'validation' (50,000).
  """
  if split not in ("train", "validation"):
    raise ValueError(f"split: unknown value {split!r} for imagenet64 (allowed: train, validation)")
  try:
    tfds = importlib.import_module("tensorflow_datasets")
    importlib.import_module(IMAGENET64_MODULE)
  except ImportError as e:
    raise ValueError(f"data.tfds_dir: imagenet64 needs tensorflow_datasets ({e})") from None
  try:
    return tfds.data_source(
      IMAGENET64_NAME,
      split=split,
      data_dir=str(data_dir) if data_dir else None,
      download=False,
      builder_kwargs={"file_format": "array_record"},
    )
  except Exception as e:  # tfds raises several kinds when nothing is prepared; one line names the field
    where = data_dir or "the default tfds data dir"
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise ValueError(f"data.tfds_dir: {IMAGENET64_NAME} is not prepared in {where} ({first})") from None


def image_row(image: np.ndarray, offset: int = BYTE_OFFSET) -> BatchDict:
  """A 64x64x3 uint8 image as a raster-order byte sequence (row, column, channel) of 12,288 ids = value + offset."""
  flat = np.asarray(image, np.uint8).reshape(-1).astype(np.int32) + offset
  ones = np.ones(flat.shape, np.int32)
  return {"input_ids": flat, "attention_mask": ones, "weights": ones.astype(np.float32)}


def imagenet64_dataset(
  global_batch_size: int,
  seed: int,
  shard_index: int = 0,
  shard_count: int = 1,
  *,
  split: str = "train",
  data_dir: str | Path | None = None,
  offset: int = BYTE_OFFSET,
) -> grain.IterDataset:
  """imagenet64 batches of flattened RGB bytes (length 12,288): train shuffled with `seed` per epoch, forever;
  validation in order, one pass."""
  check_int("seed", seed, 0)
  source = imagenet64_source(split, data_dir)
  rows = len(source)

  def make_row(k: int) -> BatchDict:
    example = source[k]
    return image_row(example["image"] if isinstance(example, Mapping) else example, offset)

  if split == "train":
    order = grain.MapDataset.range(rows).shuffle(seed=seed).repeat()
    return indexed_batches(make_row, global_batch_size, shard_index, shard_count, order=order)
  pad = image_row(np.zeros((64, 64, 3), np.uint8), offset)
  pad = {**pad, "attention_mask": np.zeros_like(pad["attention_mask"]), "weights": np.zeros_like(pad["weights"])}
  return indexed_batches(make_row, global_batch_size, shard_index, shard_count, num_rows=rows, pad_row=pad)
