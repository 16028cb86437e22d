"""`make demo` for Reformer: a short ReformerLM run on the bundled Wikipedia XML bytes, a sampled continuation, and
how attention time per token scales with length (Kitaev et al. 2020 §5, Figure 5).

Trains `configs/reformer/char_lm.py` (LSH attention, reversible layers) shrunk to CPU-demo size, prints held-out
bits per character, samples bytes after a prompt with the cached decoder (`reformer_jax.decode`), then times one
forward + backward pass of full, chunked local and LSH attention (`core.lsh`) at a fixed number of tokens per batch.

  python -m reformer_jax.demo --workdir=workdirs/reformer_demo [--steps 120]
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from core import lsh
from core.config import load_config_file
from core.data.tokenizers import ByteTokenizer
from core.main import run_app
from reformer_jax import decode, tasks, train

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("workdir", "workdirs/reformer_demo", "Where the language-model run goes (resumed).")
flags.DEFINE_integer("steps", 120, "Training steps of the demo ReformerLM (~1 min on 2 CPU cores).")
flags.DEFINE_integer("sample_bytes", 120, "Bytes to sample after the prompt.")
flags.DEFINE_string("lengths", "1024,4096,8192", "Sequence lengths of the attention scaling table.")
FLAGS = flags.FLAGS
PROMPT = "<page>\n    <title>"


def train_and_sample() -> None:
  config = load_config_file(os.path.join(_REPO, "configs/reformer/char_lm.py"))
  demo = dict(d_model=128, d_ff=256, n_layers=2, n_heads=2, d_head=64, chunk_len=32, n_buckets=8, max_len=256)
  config.model.update(demo)
  config.task.update(dict(seq_len=256, eval_examples=32))
  config.train.update(dict(total_steps=FLAGS.steps, eval_every=FLAGS.steps, checkpoint_every=FLAGS.steps))
  result = train.train_and_evaluate(config, FLAGS.workdir)
  evals = [h for h in result.history if h["split"] == "eval"]
  if evals:
    print(f"ReformerLM, {FLAGS.steps} steps: held-out {evals[-1]['bits_per_token']:.3f} bits per character "
          f"(uniform over bytes: 8.0)")  # fmt: skip
  tokenizer = ByteTokenizer()
  prompt = jnp.asarray(tokenizer.encode(PROMPT), jnp.int32)
  cfg = train.model_config(config)
  ids = decode.sample(
    result.params, cfg, prompt, jax.random.key(0), max_new_tokens=FLAGS.sample_bytes, temperature=0.8, top_k=20
  )
  print("sample:\n" + tokenizer.decode(np.asarray(ids[0])))


def _seconds(fn, *args) -> float:
  jax.block_until_ready(fn(*args))  # compile
  started = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - started


def scaling_table() -> None:
  """Forward + backward milliseconds per 1K tokens at 8K tokens per batch, 2 heads of 64, chunk 64, causal."""
  tokens, heads, dim, chunk = 8192, 2, 64, 64

  def grad(attend):
    return jax.jit(jax.grad(lambda qk, v: jnp.sum(jnp.square(attend(qk, v))), argnums=(0, 1)))

  kinds = {
    "full": grad(lambda qk, v: jax.nn.dot_product_attention(qk, qk, v, is_causal=True)),
    "local": grad(lambda qk, v: lsh.local_attention(qk, qk, v, chunk_len=chunk, causal=True)),
  }
  for n_hashes in (1, 2):
    kinds[f"lsh-{n_hashes}"] = grad(
      lambda qk, v, r=n_hashes: lsh.lsh_attention(
        qk, v, jax.random.key(0), n_hashes=r, n_buckets=None, chunk_len=chunk, causal=True
      )
    )
  print(f"\nattention fwd+bwd, ms per 1K tokens ({tokens} tokens per batch, {heads} heads x {dim}, chunk {chunk})")
  print(f"{'length':>8s}" + "".join(f"{name:>10s}" for name in kinds))
  for length in (int(n) for n in FLAGS.lengths.split(",")):
    qk, v = (jax.random.normal(jax.random.key(i), (tokens // length, length, heads, dim)) for i in (1, 2))
    cells = []
    for name, fn in kinds.items():
      if name == "full" and length > 4096:
        cells.append(f"{'(skip)':>10s}")  # L² logits: 0.5 GB at 8K, slow on a CPU
        continue
      cells.append(f"{1000 * _seconds(fn, qk, v) / (tokens / 1024):10.1f}")
    print(f"{length:8d}" + "".join(cells), flush=True)
  print("full attention grows with L; LSH and local stay flat (Reformer Figure 5); benchmarks/reformer has the rest")


def main(argv) -> None:
  del argv
  tasks.wikipedia_xml_bytes()  # the bundled corpus, fetched by `make data`
  train_and_sample()
  scaling_table()


if __name__ == "__main__":
  run_app(main)
