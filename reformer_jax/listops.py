"""ListOps (Nangia & Bowman 2018) as Long Range Arena generates it, seeded: nested MIN / MAX / MED / SM over digits.

Tay et al., arXiv 2011.04006 §3.1; rules of google-research/long-range-arena `lra_benchmarks/data/listops.py`:
a node at depth d < max_depth is an operator with probability VALUE_P = 0.25 (else a digit 0-9; depth max_depth is
always a digit), an operator takes 2..max_args arguments and one of MIN, MAX, MED (int(np.median): the two middle
values averaged and truncated), SM (sum mod 10); the tree is kept when min_length < tokens < max_length (tokens
without parentheses: an operator node counts its opening token and its ']'). LRA: depth 10, 10 arguments,
500 < length < 2000, 96k / 2k / 2k examples, 10 classes. Differences, for reproducibility: LRA draws from the
unseeded `random` module and orders examples through a `set()`; here example i of a split is a pure function of
(seed, split, i) and the order is a seeded shuffle. LRA's pipeline strips the parentheses and pads/truncates
(`tokenize_example`). The Reformer (arXiv 2001.04451) scores 37.27% on LRA ListOps.

US 10,909,461: no claim step (data only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import grain
import numpy as np

from reformer_jax import tasks

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
END = "]"
VOCAB = ("<pad>",) + tuple(str(d) for d in range(10)) + OPERATORS + (END,)  # id = index; 0 is padding
TOKEN_IDS = {token: i for i, token in enumerate(VOCAB)}
PAD_ID, DIGIT_ID, OP_ID, END_ID = 0, 1, 11, 15  # digit d -> 1 + d, operator o -> 11 + o
VOCAB_SIZE = len(VOCAB)
NUM_CLASSES = 10
VALUE_P = 0.25
LRA_NUM_EXAMPLES = {"train": 96_000, "validation": 2_000, "test": 2_000}


@dataclasses.dataclass(frozen=True)
class ListOpsSpec:
  """Generator settings; defaults are LRA's. Lengths are exclusive bounds on the token count, as in LRA."""

  min_length: int = 500
  max_length: int = 2000
  max_depth: int = 10
  max_args: int = 10

  def validate(self) -> ListOpsSpec:
    for name, minimum in (("min_length", 0), ("max_length", 3), ("max_depth", 2), ("max_args", 2)):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"listops.{name}: must be an int >= {minimum}, got {value!r}")
    if self.max_length - self.min_length < 2:
      raise ValueError(
        f"listops.max_length: need min_length < length < max_length to hold a length, got "
        f"({self.min_length}, {self.max_length})"
      )
    return self


def apply_operator(op: str, values: Sequence[int]) -> int:
  """LRA's `to_value` for one saturated operator: MIN, MAX, MED = int(np.median(values)), SM = sum mod 10."""
  if not values:
    raise ValueError(f"ListOps operator {op} got no arguments")
  if op == "[MIN":
    return min(values)
  if op == "[MAX":
    return max(values)
  if op == "[MED":
    ordered = sorted(values)
    mid = len(ordered) // 2
    # np.median averages the two middle values of an even count; int() truncates: (a + b) // 2 for digits >= 0.
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) // 2
  if op == "[SM":
    return sum(values) % 10
  raise ValueError(f"ListOps operator: unknown {op!r} (allowed: {', '.join(OPERATORS)})")


def evaluate(expression: str | Sequence[str]) -> int:
  """Value of a ListOps expression, e.g. '[MAX 4 3 [MIN 2 3 ] 1 0 [MED 1 5 8 9 2 ] ]' -> 5.

  Accepts LRA's parenthesised strings ('( ( [MAX 2 ) 9 ) ] )' style) and token lists; parentheses are ignored.
  """
  tokens = expression.split() if isinstance(expression, str) else list(expression)
  stack: list[tuple[str, list[int]]] = []
  result = None
  for token in tokens:
    if token in ("(", ")"):
      continue
    if result is not None:
      raise ValueError(f"ListOps expression: token {token!r} after the complete expression")
    if token in OPERATORS:
      stack.append((token, []))
      continue
    if token == END:
      if not stack:
        raise ValueError("ListOps expression: ']' without an open operator")
      op, values = stack.pop()
      value = apply_operator(op, values)
    elif token.isdigit() and len(token) == 1:
      value = int(token)
    else:
      raise ValueError(f"ListOps expression: unknown token {token!r} (allowed: digits, {', '.join(OPERATORS)}, ])")
    if stack:
      stack[-1][1].append(value)
    else:
      result = value
  if stack or result is None:
    raise ValueError(f"ListOps expression: incomplete ({len(stack)} operators left open)")
  return result


class _TooLong(Exception):
  """The tree reached max_length tokens: it will be rejected, so generation stops early."""


def _uniforms(rng: np.random.Generator, block: int = 4096) -> Iterator[float]:
  while True:
    yield from rng.random(block).tolist()


def _tree(u: Iterator[float], depth: int, spec: ListOpsSpec, out: list[int]) -> int:
  """Appends one LRA `generate_tree` node's token ids to `out` and returns its value."""
  if depth < spec.max_depth and next(u) <= VALUE_P:  # LRA: operator when random.random() <= VALUE_P
    n_args = 2 + int(next(u) * (spec.max_args - 1))  # random.randint(2, max_args)
    op = int(next(u) * len(OPERATORS))
    out.append(OP_ID + op)
    values = [_tree(u, depth + 1, spec, out) for _ in range(n_args)]
    out.append(END_ID)
    if len(out) >= spec.max_length:
      raise _TooLong
    return apply_operator(OPERATORS[op], values)
  value = int(next(u) * 10)
  out.append(DIGIT_ID + value)
  if len(out) >= spec.max_length:
    raise _TooLong
  return value


def generate(spec: ListOpsSpec, seed: int, split: str, index: int) -> tuple[np.ndarray, int]:
  """Example `index` of `split`: (token ids int32 without padding, label 0-9), LRA's rejection sampling on length.

  Trees are drawn from one seeded stream (tasks.row_rng(seed, split, index)) until min_length < tokens < max_length;
  a tree is abandoned as soon as it reaches max_length (it would be rejected anyway), which changes no probability.
  """
  spec.validate()
  u = _uniforms(tasks.row_rng(seed, split, index))
  while True:
    out: list[int] = []
    try:
      value = _tree(u, 1, spec, out)
    except _TooLong:
      continue
    if len(out) > spec.min_length:
      return np.asarray(out, np.int32), value


def decode(ids: Sequence[int] | np.ndarray) -> str:
  """Token ids back to LRA's expression text without parentheses (padding dropped)."""
  return " ".join(VOCAB[int(i)] for i in ids if int(i) != PAD_ID)


def encode(expression: str | Sequence[str], seq_len: int) -> tuple[np.ndarray, np.ndarray]:
  """LRA tokenisation: parentheses stripped, one id per token, truncated / padded to seq_len -> (ids, mask)."""
  tokens = expression.split() if isinstance(expression, str) else list(expression)
  unknown = sorted({t for t in tokens if t not in TOKEN_IDS and t not in ("(", ")")} | ({"<pad>"} & set(tokens)))
  if unknown:
    raise ValueError(f"ListOps expression: unknown tokens {unknown[:5]} (allowed: digits, {', '.join(OPERATORS)}, ])")
  ids = [TOKEN_IDS[t] for t in tokens if t not in ("(", ")")]
  return _pad(np.asarray(ids, np.int32), seq_len)


def _pad(ids: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
  ids = ids[:seq_len]
  out = np.full(seq_len, PAD_ID, np.int32)
  out[: len(ids)] = ids
  mask = np.zeros(seq_len, np.int32)
  mask[: len(ids)] = 1
  return out, mask


def listops_row(spec: ListOpsSpec, seed: int, split: str, index: int, seq_len: int) -> tasks.BatchDict:
  """One batch row: input_ids and attention_mask [seq_len] (truncated like LRA if seq_len < length), label, weight 1."""
  ids, label = generate(spec, seed, split, index)
  input_ids, mask = _pad(ids, seq_len)
  return {"input_ids": input_ids, "attention_mask": mask, "label": np.int32(label), "weights": np.float32(1.0)}


def listops_dataset(
  spec: ListOpsSpec,
  seq_len: int,
  global_batch_size: int,
  seed: int,
  shard_index: int = 0,
  shard_count: int = 1,
  *,
  split: str = "train",
  num_examples: int | None = None,
) -> grain.IterDataset:
  """ListOps batches (schema in `reformer_jax.tasks`). train: the pool of `num_examples` (LRA 96,000) generated
  examples in a seeded shuffle, reshuffled every epoch, forever; validation / test (LRA 2,000 each): one pass in
  order, the last batch filled with weight-0 padding rows. Examples are generated when read (never stored)."""
  spec.validate()
  tasks.check_int("seq_len", seq_len, 1)
  tasks.check_int("seed", seed, 0)
  tasks.split_id(split)
  num_examples = LRA_NUM_EXAMPLES[split] if num_examples is None else num_examples
  tasks.check_int("num_examples", num_examples, 1)
  make_row = lambda k: listops_row(spec, seed, split, k, seq_len)
  if split == "train":
    order = grain.MapDataset.range(num_examples).shuffle(seed=seed).repeat()
    return tasks.indexed_batches(make_row, global_batch_size, shard_index, shard_count, order=order)
  pad = {
    "input_ids": np.zeros(seq_len, np.int32),
    "attention_mask": np.zeros(seq_len, np.int32),
    "label": np.int32(0),
    "weights": np.float32(0.0),
  }
  return tasks.indexed_batches(
    make_row, global_batch_size, shard_index, shard_count, num_rows=num_examples, pad_row=pad
  )


def class_distribution(spec: ListOpsSpec, seed: int, split: str = "train", num_examples: int = 2000) -> np.ndarray:
  """Fraction of each label 0-9 among the first `num_examples` examples; its max is the majority-class baseline."""
  spec.validate()
  counts = np.zeros(NUM_CLASSES, np.int64)
  for index in range(num_examples):
    counts[generate(spec, seed, split, index)[1]] += 1
  return counts / max(num_examples, 1)
