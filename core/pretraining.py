"""What the masked-LM pretraining jobs share: data and masking checks, bundled documents, the held-out evaluation.

Used by `core.pretrain_mlm` (BERT, Devlin et al. 2018 §3.1) and `electra_jax.pretrain` (Clark et al. 2020 §3.1):
both read the `data` section (corpus, packed row length, held-out fraction, WordPiece vocab), corrupt tokens by a
`mask_prob` / `mask_token_fraction` / `random_token_fraction` section (BERT's 80/10/10 rule), and evaluate on a fixed
list of held-out batches with fixed per-batch keys and no dropout, so eval numbers at different steps compare the
same masks and samples.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from core import bert as bert_lib
from core import config as config_lib

SHARD_BY = ("rows", "documents")  # rows: same global batch on any host count; documents: each host reads its own
EVAL_KEY = 1234  # base key of the held-out evaluation: batch i uses fold_in(key(EVAL_KEY), i)
VOCAB_HINT = "a BERT WordPiece vocab.txt (run `make data` for the bundled one)"


def model_config(config: ml_collections.ConfigDict) -> bert_lib.BertConfig:
  """The validated encoder of a `model` section, or a one-line ConfigError ('model: <problem>')."""
  try:
    return bert_lib.from_model_section(config_lib.get(config, "model")).validate()
  except (TypeError, ValueError) as e:
    raise config_lib.ConfigError(f"model: {' '.join(str(e).split())}") from None


def validate_data(config: ml_collections.ConfigDict, corpora: Sequence[str], max_positions: int) -> None:
  """One-line ConfigErrors for the `data` section; `max_positions` is the model's position-table size."""
  config_lib.check_choice(config, "data.corpus", corpora)
  config_lib.check_choice(config, "data.shard_by", SHARD_BY)
  config_lib.check_int(config, "data.seq_len", minimum=8)
  if config.data.seq_len > max_positions:
    raise config_lib.ConfigError(
      f"data.seq_len: {config.data.seq_len} exceeds model.max_position_embeddings {max_positions}"
    )
  config_lib.check_range(config, "data.eval_fraction", 0.0, 1.0)
  config_lib.check_int(config, "data.max_documents", minimum=0)
  if not isinstance(config_lib.get(config, "data.vocab_path"), str):
    raise config_lib.ConfigError(f"data.vocab_path: must be a path or '', got {config.data.vocab_path!r}")
  if config.data.vocab_path:
    config_lib.check_file(config, "data.vocab_path", VOCAB_HINT)


def validate_masking(config: ml_collections.ConfigDict, section: str) -> None:
  """One-line ConfigErrors for a masking section: 0 < mask_prob < 1, fractions in [0, 1] summing to <= 1."""
  config_lib.check_range(config, f"{section}.mask_prob", 0.0, 1.0)
  config_lib.check_range(config, f"{section}.mask_token_fraction", 0.0, 1.0, inclusive=True)
  room = 1.0 - config[section].mask_token_fraction
  config_lib.check_range(config, f"{section}.random_token_fraction", 0.0, room, inclusive=True)


def bundled_texts(corpus: str) -> list[str]:
  """Texts of a bundled corpus: 'wikipedia' (articles), 'lee' (Lee corpus) or 'bundled' (both, in that order)."""
  from core.data import corpora

  texts = [text for _, text in corpora.wikipedia_articles()] if corpus in ("bundled", "wikipedia") else []
  return texts + (corpora.lee_corpus() if corpus in ("bundled", "lee") else [])


def split_documents(
  texts: Sequence[str], tokenizer: Any, data: ml_collections.ConfigDict, *, shuffle_seed: int | None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
  """Tokenized (train, held-out) documents: optionally a fixed shuffle, the first `data.max_documents` (0 = all),
  empty documents dropped, the last `data.eval_fraction` held out (at least one)."""
  if shuffle_seed is not None:
    texts = [texts[i] for i in np.random.default_rng(shuffle_seed).permutation(len(texts))]
  if data.max_documents:
    texts = texts[: data.max_documents]
  ids = [d for d in tokenizer.encode_documents(list(texts)) if d.size]
  if len(ids) < 2:
    raise config_lib.ConfigError(f"data.max_documents: {len(ids)} non-empty documents; need >= 2 (train + eval)")
  n_eval = max(1, round(len(ids) * data.eval_fraction))
  return ids[:-n_eval], ids[-n_eval:]


def held_out_batches(docs: Sequence[np.ndarray], seq_len: int, batch_size: int, count: int, **row_ids: Any) -> list:
  """`count` packed batches of held-out rows in a fixed order, cycled when the documents fill fewer batches."""
  from core.data import pipeline

  rows = iter(pipeline.lm_dataset(docs, seq_len=seq_len, batch_size=batch_size, seed=0, shuffle=False, **row_ids))
  return [batch for _, batch in zip(range(count), rows)]


def make_eval_fn(
  loss: Callable[..., tuple[jax.Array, Mapping[str, jax.Array]]], batches: Sequence[Mapping[str, np.ndarray]]
) -> Callable[[Any], dict[str, float]]:
  """eval(params) -> {'loss', every metric}: means over `batches` of `loss(params, batch, key, deterministic=True)`,
  with the fixed key fold_in(key(EVAL_KEY), i) for batch i."""
  step = jax.jit(lambda params, batch, key: loss(params, batch, key, deterministic=True))

  def evaluate(params) -> dict[str, float]:
    results = [step(params, batch, jax.random.fold_in(jax.random.key(EVAL_KEY), i)) for i, batch in enumerate(batches)]
    summary = {name: float(np.mean([float(m[name]) for _, m in results])) for name in results[0][1]}
    summary["loss"] = float(np.mean([float(value) for value, _ in results]))
    return summary

  return evaluate
