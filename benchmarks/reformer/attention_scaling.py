"""Reformer Fig. 5 on this machine: forward + backward time per token of full, local and LSH attention against length.

Kitaev et al., arXiv 2001.04451 §5 Fig. 5 (right): at a fixed number of tokens per batch (batch = tokens // L), full
attention's time per token grows linearly with L while LSH attention's stays flat and grows with the number of hashes.
Measured here: `jax.nn.dot_product_attention` (full), `core.lsh.local_attention` (chunked, the speed floor of LSH at
the same chunk length) and `core.lsh.lsh_attention` with 1, 2, 4, 8 hashes (shared QK, default bucket count
2·L/chunk), each as jit(value_and_grad) of Σ out·g w.r.t. its inputs, fp32, median over repeats after warm-up.
Full attention materialises [B, N, L, L] logits: above --full_max_len it is skipped, and it runs on at most
--full_tokens tokens (fewer sequences than the batch; its cost is linear in the batch, so time per token is the same);
both are marked in the table. If `transformers` ships PyTorch's Reformer, its LSHSelfAttention (which also applies
its query-key and value projections) is timed at the same shapes (--torch_max_len caps it).

Issue 11 goals: LSH time per token at 64K <= 1.3x its value at 1K; LSH >= 20x faster than full at 16K; LSH <= 2x local
attention with the same chunk length.

  python -m benchmarks.reformer.attention_scaling [--max_len 65536] [--tokens 65536] [--hashes 1,2,4,8]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time

import jax
import jax.numpy as jnp

from benchmarks.core import common
from core import lsh

NAME = "reformer_attention_scaling"


def _lengths(min_len: int, max_len: int) -> list[int]:
  lengths, length = [], min_len
  while length <= max_len:
    lengths.append(length)
    length *= 2
  return lengths


def _grad_fn(attend):
  """jit(value_and_grad) of Σ attend(*inputs) · g with respect to every input: one forward + backward pass."""

  def loss(inputs, g):
    return jnp.sum(attend(*inputs) * g)

  return jax.jit(jax.value_and_grad(loss))


def _time(fn, args, repeats: int) -> tuple[float, float]:
  """(compile + first call seconds, median seconds of `repeats` calls)."""
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  first = time.perf_counter() - start
  return first, statistics.median(common.time_fn(lambda: fn(*args), warmup=0, repeats=repeats))


def _inputs(key, batch: int, length: int, heads: int, d_head: int, count: int):
  keys = jax.random.split(key, count + 1)
  shape = (batch, length, heads, d_head)
  return tuple(jax.random.normal(k, shape, jnp.float32) for k in keys[:count]), jax.random.normal(keys[-1], shape)


def measure_jax(kind: str, length: int, batch: int, args, n_hashes: int = 0) -> dict:
  key = jax.random.fold_in(jax.random.key(args.seed), length)
  if kind == "full":
    inputs, g = _inputs(key, batch, length, args.heads, args.d_head, 3)
    fn = _grad_fn(lambda q, k, v: jax.nn.dot_product_attention(q, k, v))
  elif kind == "local":
    inputs, g = _inputs(key, batch, length, args.heads, args.d_head, 3)
    fn = _grad_fn(lambda q, k, v: lsh.local_attention(q, k, v, chunk_len=args.chunk))
  else:
    inputs, g = _inputs(key, batch, length, args.heads, args.d_head, 2)
    hash_key = jax.random.key(args.seed + 1)
    fn = _grad_fn(
      lambda qk, v: lsh.lsh_attention(qk, v, hash_key, n_hashes=n_hashes, n_buckets=None, chunk_len=args.chunk)
    )
  first, median = _time(fn, (inputs, g), args.repeats)
  return dict(first_call_s=first, median_s=median, us_per_token=1e6 * median / (batch * length), batch=batch)


def measure_torch(length: int, batch: int, n_hashes: int, args) -> dict:
  """HuggingFace transformers' LSHSelfAttention (PyTorch, eager) forward + backward at the same shapes."""
  import torch  # pylint: disable=g-import-not-at-top
  from transformers import ReformerConfig  # pylint: disable=g-import-not-at-top
  from transformers.models.reformer.modeling_reformer import LSHSelfAttention  # pylint: disable=g-import-not-at-top

  n_buckets = lsh.default_n_buckets(length, min(args.chunk, length))
  config = ReformerConfig(
    hidden_size=args.heads * args.d_head,
    num_attention_heads=args.heads,
    attention_head_size=args.d_head,
    lsh_attn_chunk_length=args.chunk,
    num_hashes=n_hashes,
    num_buckets=list(n_buckets) if isinstance(n_buckets, tuple) else n_buckets,
    lsh_num_chunks_before=1,
    lsh_num_chunks_after=0,
    lsh_attention_probs_dropout_prob=0.0,
    is_decoder=False,
    max_position_embeddings=length,
    attn_layers=["lsh"],
    hash_seed=args.seed,
  )
  torch.manual_seed(args.seed)
  layer = LSHSelfAttention(config)
  hidden = torch.randn(batch, length, args.heads * args.d_head, requires_grad=True)
  g = torch.randn(batch, length, args.heads * args.d_head)

  def step():
    hidden.grad = None
    layer.zero_grad(set_to_none=True)
    out = layer(hidden)[0]
    (out * g).sum().backward()
    return hidden.grad

  first, median = _time(step, (), args.repeats)
  return dict(first_call_s=first, median_s=median, us_per_token=1e6 * median / (batch * length), batch=batch)


def _torch_reformer_status() -> str | None:
  """None when transformers' PyTorch Reformer can be imported, else why not (one line)."""
  for module in ("torch", "transformers"):
    if importlib.util.find_spec(module) is None:
      return f"{module} is not installed (pip install -e '.[bench]')"
  try:
    from transformers.models.reformer import modeling_reformer  # pylint: disable=g-import-not-at-top,unused-import
  except Exception as e:  # pylint: disable=broad-except
    return f"transformers has no PyTorch Reformer: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
  return None


def _cell(row: dict, name: str) -> str:
  cell = row["cells"].get(name)
  if cell is None:
    return "skipped"
  mark = "*" if cell.get("partial_batch") else ""
  return f"{cell['us_per_token']:.2f}{mark}"


def _ratios(rows: list[dict], hashes: list[int], full_at: int) -> dict:
  by_len = {r["length"]: r["cells"] for r in rows}
  lengths = sorted(by_len)
  out: dict = {}
  lo, hi = lengths[0], lengths[-1]
  for r in hashes:
    name = f"lsh{r}"
    out[f"{name}_per_token_{hi}_over_{lo}"] = by_len[hi][name]["us_per_token"] / by_len[lo][name]["us_per_token"]
    if full_at in by_len and by_len[full_at].get("full"):
      # Per token: full attention may run on fewer sequences than the batch (--full_tokens), so call times differ.
      out[f"full_over_{name}_at_{full_at}"] = (by_len[full_at]["full"]["us_per_token"]
                                               / by_len[full_at][name]["us_per_token"])
    out[f"{name}_over_local_max"] = max(c[name]["us_per_token"] / c["local"]["us_per_token"] for c in by_len.values())
    out[f"{name}_over_local_at_{hi}"] = by_len[hi][name]["us_per_token"] / by_len[hi]["local"]["us_per_token"]
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--min_len", type=int, default=1024)
  parser.add_argument("--max_len", type=int, default=65536, help="largest L (lengths double from --min_len)")
  parser.add_argument("--tokens", type=int, default=65536, help="tokens per batch: batch = tokens // L")
  parser.add_argument("--hashes", default="1,2,4,8")
  parser.add_argument("--heads", type=int, default=1)
  parser.add_argument("--d_head", type=int, default=64)
  parser.add_argument("--chunk", type=int, default=128)
  parser.add_argument("--full_max_len", type=int, default=16384, help="skip full attention above this L")
  parser.add_argument("--full_tokens", type=int, default=16384, help="full attention runs on at most this many tokens")
  parser.add_argument("--torch_max_len", type=int, default=16384, help="skip transformers' Reformer above this L")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--name", default=NAME, help="results/<name>.json + .png")
  args = parser.parse_args()
  hashes = [int(h) for h in args.hashes.split(",") if h]
  for field in ("min_len", "max_len", "tokens", "heads", "d_head", "chunk", "repeats", "full_tokens"):
    if getattr(args, field) < 1:
      parser.error(f"--{field}: must be >= 1, got {getattr(args, field)}")
  if not hashes or min(hashes) < 1:
    parser.error(f"--hashes: need ints >= 1, got {args.hashes!r}")
  if args.max_len < args.min_len or args.min_len % args.chunk or args.tokens < args.max_len:
    parser.error(
      f"need chunk | min_len <= max_len <= tokens, got chunk {args.chunk}, min_len {args.min_len}, "
      f"max_len {args.max_len}, tokens {args.tokens}"
    )
  torch_status = _torch_reformer_status()
  if torch_status is None:
    import torch  # pylint: disable=g-import-not-at-top

    torch.set_num_threads(max(1, os.cpu_count() or 1))
  print(f"PyTorch Reformer (transformers): {'timed' if torch_status is None else 'not timed: ' + torch_status}")
  names = ["full", "local"] + [f"lsh{r}" for r in hashes] + (["torch_lsh1"] if torch_status is None else [])
  print(
    f"fwd+bwd time per token (us), fp32, tokens/batch {args.tokens}, heads {args.heads}, d_head {args.d_head}, "
    f"chunk {args.chunk}; * = full attention on fewer sequences than the batch"
  )
  print(f"{'L':>6} {'batch':>5} | " + " | ".join(f"{n:>10}" for n in names))
  rows = []
  for length in _lengths(args.min_len, args.max_len):
    batch = args.tokens // length
    cells: dict = {}
    if length <= args.full_max_len:
      full_batch = max(1, min(batch, args.full_tokens // length))
      cells["full"] = {**measure_jax("full", length, full_batch, args), "partial_batch": full_batch < batch}
    cells["local"] = measure_jax("local", length, batch, args)
    for r in hashes:
      cells[f"lsh{r}"] = measure_jax("lsh", length, batch, args, n_hashes=r)
    if torch_status is None and length <= args.torch_max_len:
      cells["torch_lsh1"] = measure_torch(length, batch, 1, args)
    row = dict(length=length, batch=batch, cells=cells)
    rows.append(row)
    print(f"{length:>6} {batch:>5} | " + " | ".join(f"{_cell(row, n):>10}" for n in names), flush=True)

  full_at = 16384 if any(r["length"] == 16384 for r in rows) else max(
    (r["length"] for r in rows if "full" in r["cells"]), default=0
  )
  ratios = _ratios(rows, hashes, full_at)
  lo, hi = rows[0]["length"], rows[-1]["length"]
  for r in hashes:
    name = f"lsh{r}"
    parts = [f"LSH-{r}: per-token {hi} / {lo} = {ratios[f'{name}_per_token_{hi}_over_{lo}']:.2f}x (goal <= 1.3x)"]
    if f"full_over_{name}_at_{full_at}" in ratios:
      parts.append(f"full / LSH at {full_at} = {ratios[f'full_over_{name}_at_{full_at}']:.1f}x (goal >= 20x)")
    parts.append(
      f"LSH / local at {hi} = {ratios[f'{name}_over_local_at_{hi}']:.2f}x, worst over L "
      f"{ratios[f'{name}_over_local_max']:.2f}x (goal <= 2x for 1 hash; r hashes do r rounds)"
    )
    print(" | ".join(parts))

  def plot(ax):
    for name in names:
      points = [(r["length"], r["cells"][name]["us_per_token"]) for r in rows if name in r["cells"]]
      if points:
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length L")
    ax.set_ylabel("fwd+bwd time per token (us)")
    ax.set_title(f"attention, {args.tokens} tokens per batch (Reformer Fig. 5)")
    ax.legend(fontsize=7)

  settings = {k: v for k, v in vars(args).items() if k != "name"}
  path = common.write_results(
    args.name, dict(settings=settings, torch_reformer=torch_status or "timed", rows=rows, ratios=ratios), plot
  )
  print(f"wrote {path}, {path.with_suffix('.png')}")


if __name__ == "__main__":
  main()
