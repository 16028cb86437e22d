"""REALM open-domain QA finetuning: retrieve top-k documents, read answer spans, marginalise over both.

REALM, arXiv 2002.08909 §4 (open-QA finetuning, "we follow ORQA": top-5 documents, exact match) and ORQA,
arXiv 1906.00300 §4 (frozen document embeddings, the span reader, the retriever + reader marginal log-likelihood);
US 11,003,865: "after pretraining, the model is finetuned with supervision, e.g. open-domain QA".

  python -m realm_jax.openqa --config=configs/realm/openqa.py:size=minilm --workdir=/tmp/realm_qa     # CPU capitals
  python -m realm_jax.openqa --config=configs/realm/openqa.py:dataset=nq_open,paper=true --workdir=...

One step: a batch of B questions, each with the top-k documents the index found (k = 5; the corpus embedded once by
the frozen document embedder, the query-embedder copy used for search refreshed every `realm.refresh_every` steps;
no null document, nothing excluded); f(x, z) = the current query embedder against the stored document embeddings;
the knowledge-augmented encoder reads join(x, z) = '[CLS] question [SEP] title [SEP] text [SEP]' and
`reader.SpanScorer` scores every span of the document part; `reader.reader_loss` = retriever marginal + reader
marginal over the spans whose ids equal an answer (found on the host right after retrieval). The document embedder
and the unused MLM head are frozen (`Task.trainable`): no gradient, no optimizer state. Evaluation: exact match of
the argmax (document, span) text (cut from the document through character offsets) on the dev questions, top_k_match
(an answer string in a retrieved document: the retrieval upper bound) and reader_oracle (a correct span among them).
Params: a `model.Realm` tree {'query_embedder', 'doc_embedder', 'reader'} plus 'span_scorer', initialised from a
`realm_jax.pretrain` run (`realm_from`), from MiniLM / a HuggingFace BERT in all three encoders (`init_from`, with
`retriever_from` an ICT run's embedders, as `realm_jax.pretrain`), or randomly.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from core import checkpoint as checkpoint_lib
from core import config as config_lib
from core import main as main_lib
from core import pretrained
from core import sharding as sharding_lib
from core import train as train_lib
from core import tree as tree_lib
from realm_jax import data as data_lib
from realm_jax import index as index_lib
from realm_jax import model as model_lib
from realm_jax import objective
from realm_jax import openqa_data
from realm_jax import pretrain
from realm_jax import reader

# ORQA freezes the block embeddings; the MLM head has no use in QA (and weight decay would shrink it).
TRAINABLE = ("query_embedder/.*", "reader/encoder/.*", "span_scorer/.*")
EVAL_KEY = 4321
# `make demo`'s run (realm_jax.demo, which also sets the steps and evaluates once at the end): a 1,000-document sample.
DEMO_OVERRIDES = {"data.max_docs": 1000, "train.log_every": 10}
MODEL_INPUTS = ("query_ids", "query_mask", "candidate_ids", "candidate_mask", "candidate_emb", "allowed")


def validate(config: ml_collections.ConfigDict) -> None:
  """One-line ConfigErrors before any data is read or any directory is written."""
  train_lib.validate(config)
  cfg = pretrain.model_config(config)
  d = config.data
  config_lib.check_choice(config, "data.dataset", openqa_data.DATASETS)
  config_lib.check_int(config, "data.query_len", minimum=4)
  config_lib.check_int(config, "data.doc_len", minimum=4)
  joined = d.query_len + d.doc_len - 1
  if joined > cfg.encoder.max_position_embeddings:
    raise config_lib.ConfigError(f"data.doc_len: join(x, z) of {joined} tokens exceeds model.max_position_embeddings "
                                 f"{cfg.encoder.max_position_embeddings}")
  config_lib.check_int(config, "data.max_docs", minimum=0)
  config_lib.check_int(config, "data.max_questions", minimum=0)
  config_lib.check_range(config, "data.dev_fraction", 0.0, 1.0)
  if not isinstance(config_lib.get(config, "data.tfds_dir"), str):
    raise config_lib.ConfigError(f"data.tfds_dir: must be a directory, gs://... or '', got {d.tfds_dir!r}")
  if d.dataset in openqa_data.TFDS and "://" not in d.tfds_dir:
    where = os.path.expanduser(d.tfds_dir) if d.tfds_dir else openqa_data.default_tfds_dir()
    if not os.path.isdir(where):
      raise config_lib.ConfigError(f"data.tfds_dir: needs tfds data at {where!r} ({openqa_data.TFDS[d.dataset][0]} "
                                   "prepared as array_record; not a directory)")
  config_lib.check_int(config, "realm.k", minimum=1)
  corpus = min(d.max_docs or openqa_data.KNOWLEDGE_DOCS, openqa_data.KNOWLEDGE_DOCS)
  if config.realm.k >= corpus:
    raise config_lib.ConfigError(f"realm.k: {config.realm.k} must be < the corpus of {corpus} documents "
                                 "(data.max_docs; the index searches k + 1)")
  config_lib.check_int(config, "realm.refresh_every", minimum=1)
  config_lib.check_int(config, "realm.embed_batch", minimum=1)
  config_lib.check_choice(config, "realm.index_backend", index_lib.BACKENDS)
  config_lib.check_int(config, "realm.span_hidden_size", minimum=1)
  config_lib.check_int(config, "realm.max_span_width", minimum=1, maximum=d.doc_len - 1)
  config_lib.check_int(config, "eval.max_questions", minimum=0)
  config_lib.check_int(config, "eval.batch_size", minimum=1)
  config_lib.check_int(config, "eval.predictions", minimum=0)
  if not isinstance(config_lib.get(config, "results_dir"), str):
    raise config_lib.ConfigError(f"results_dir: must be a directory path or '' (no copy), got {config.results_dir!r}")
  pretrain._check_source(config, "init_from", pretrain.INIT_FROM)  # pylint: disable=protected-access
  pretrain._check_source(config, "retriever_from", ("",))  # pylint: disable=protected-access
  pretrain._check_source(config, "realm_from", ("",))  # pylint: disable=protected-access
  if config.realm_from and (config.init_from or config.retriever_from):
    raise config_lib.ConfigError("realm_from: a REALM pretraining run sets every encoder; leave init_from and "
                                 "retriever_from '' (allowed: one of realm_from, init_from [+ retriever_from])")
  if config.realm_from:
    realm_checkpoint(config.realm_from, jax.eval_shape(OpenQA(config).init_params, jax.random.key(0)))


def realm_checkpoint(workdir: str, template: Any) -> Path:
  """The latest TrainState checkpoint of a `realm_jax.pretrain` run whose params match `template`'s Realm part
  (shapes from `jax.eval_shape`, read from orbax metadata only). One-line ConfigError otherwise."""
  steps = pretrained.checkpoint_steps(os.path.expanduser(workdir))
  if not steps:
    raise config_lib.ConfigError(f"realm_from: {workdir!r} has no checkpoints/<step>/state (a realm_jax.pretrain "
                                 "workdir)")
  checkpointer = checkpoint_lib.Checkpointer(os.path.expanduser(workdir), async_save=False)
  try:
    saved = checkpointer.state_metadata(steps[-1])
  except checkpoint_lib.CheckpointError as e:
    raise config_lib.ConfigError(f"realm_from: {e}") from None
  finally:
    checkpointer.close()
  expected = {name: template[name] for name in ("query_embedder", "doc_embedder", "reader")}
  try:
    tree_lib.check_shapes(expected, saved["params"], f"{workdir}/checkpoints/{steps[-1]} params")
  except (tree_lib.ShapeError, KeyError, TypeError) as e:
    raise config_lib.ConfigError(f"realm_from: {e} (the checkpoint and the model section differ)") from None
  return Path(checkpointer.directory) / str(steps[-1])


def load_realm(workdir: str, template: Any) -> dict[str, Any]:
  """{'query_embedder', 'doc_embedder', 'reader'} (float32 numpy) of a REALM pretraining run's latest checkpoint,
  checked against `template` first (`realm_checkpoint`): the pretrained model that §4 finetunes."""
  step_dir = realm_checkpoint(workdir, template)
  item = {"params": {name: template[name] for name in ("query_embedder", "doc_embedder", "reader")}}
  return checkpoint_lib.restore_float32(step_dir / "state", item)["params"]


class FrozenDocumentIndex(index_lib.IndexRefresh):
  """`IndexRefresh` for a frozen document embedder (ORQA §4): the corpus is embedded at the first refresh only; later
  refreshes copy the query embedder that searches it (the stored embeddings stay exact: the embedder never moves)."""

  def refresh(self, params: Any, step: int) -> bool:
    if self.embedded_at < 0:  # a resumed run restores the embeddings (IndexRefresh.restore) and never re-embeds
      return super().refresh(params, step)
    query_params, _ = self.select(params)
    self.query_params = jax.tree.map(lambda x: np.array(jax.device_get(x)), query_params)
    self.embedded_at = step
    self.refreshes += 1
    return False

  def before_step(self, step: int, params: Any) -> dict[str, float]:
    first = self.embedded_at < 0
    metrics = super().before_step(step, params)
    if not first:
      metrics.pop("refresh_docs_per_second", None)
    return metrics

  def retrieve_with(self, query_params: Any, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`retrieve` with the given query embedder instead of the refreshed copy (evaluation: the current one)."""
    saved = self.query_params
    self.query_params = query_params
    try:
      return self.retrieve(batch)
    finally:
      self.query_params = saved


class OpenQA:
  """The model, loss, host batch work and predictions of one configured run (what `make_task` wires up)."""

  def __init__(self, config: ml_collections.ConfigDict, documents: data_lib.DocumentRows | None = None, mesh=None,
               sep_id: int = 102):
    self.config, self.cfg = config, pretrain.model_config(config)
    self.model = model_lib.Realm(self.cfg)
    self.scorer = reader.SpanScorer(config.realm.span_hidden_size, dtype=self.cfg.encoder.compute_dtype)
    self.query_len, self.doc_len, self.sep_id = config.data.query_len, config.data.doc_len, sep_id
    # Spans of the document part of join(x, z): its columns query_len .. (the document row without [CLS]).
    self.starts_S, self.ends_S = reader.span_candidates(self.doc_len - 1, config.realm.max_span_width)
    self.index = None
    if documents is not None:
      template = jax.eval_shape(self.init_params, jax.random.key(0))["query_embedder"]
      self.index = pretrain.realm_index(self.model, documents, config, template, mesh, cls=FrozenDocumentIndex)

  def init_params(self, key):
    realm_key, span_key = jax.random.split(key)
    params = model_lib.init_params(self.model, realm_key, self.query_len, self.doc_len, 1)
    hidden = jax.numpy.zeros((1, self.query_len + self.doc_len - 1, self.cfg.encoder.hidden_size), jax.numpy.float32)
    starts, ends = self.starts_S + self.query_len, self.ends_S + self.query_len
    return {**params, "span_scorer": self.scorer.init(span_key, hidden, starts, ends)["params"]}

  # --- host: after retrieval ------------------------------------------------------------------------------------

  def reader_batch(self, retrieved: dict[str, np.ndarray], answer_ids) -> dict[str, np.ndarray]:
    """The model's batch from `IndexRefresh.retrieve`'s output: ∅ dropped (ORQA has none), the stored embeddings
    of the k documents, and the allowed / correct span masks (`openqa_data.span_masks`)."""
    docs_BxK = retrieved["candidate_docs"][:, 1:]
    ids, mask = retrieved["candidate_ids"][:, 1:], retrieved["candidate_mask"][:, 1:]
    answers = [answer_ids[int(q)] for q in retrieved["question"]]
    allowed, correct = openqa_data.span_masks(ids, mask, self.starts_S, self.ends_S, answers, self.sep_id)
    return {
      "question": retrieved["question"],
      "query_ids": retrieved["query_ids"],
      "query_mask": retrieved["query_mask"],
      "candidate_docs": docs_BxK,
      "candidate_ids": ids,
      "candidate_mask": mask,
      "candidate_emb": self.index.embeddings_NxD[docs_BxK],
      "allowed": allowed,
      "correct": correct,
      "gold_hit": retrieved["gold_hit"],
      "gold_valid": retrieved["gold_valid"],
    }

  # --- device ---------------------------------------------------------------------------------------------------

  def logits(self, params, batch, key, *, deterministic: bool):
    """(f(x, z)_BxK, span scores_BxKxS): the query embedder against the k documents' stored embeddings (ORQA's
    frozen blocks), and `reader.SpanScorer` over the knowledge-augmented encoder's hidden states of join(x, z)."""
    realm = {name: params[name] for name in ("query_embedder", "doc_embedder", "reader")}
    apply = functools.partial(self.model.apply, {"params": realm}, deterministic=deterministic)
    query_key, reader_key = jax.random.split(key)
    query_BxD = apply(batch["query_ids"], batch["query_mask"], method=model_lib.Realm.embed_query,
                      rngs={"dropout": query_key})
    retriever_BxK = objective.relevance(query_BxD, batch["candidate_emb"])
    joined = model_lib.join(batch["query_ids"], batch["query_mask"], batch["candidate_ids"], batch["candidate_mask"])
    b, k, length = joined[0].shape
    hidden = apply(*(x.reshape(b * k, length) for x in joined), method=model_lib.Realm.reader_hidden,
                   rngs={"dropout": reader_key})
    spans_S = (self.starts_S + self.query_len, self.ends_S + self.query_len)
    span_BxKxS = self.scorer.apply({"params": params["span_scorer"]}, hidden, *spans_S).reshape(b, k, -1)
    return retriever_BxK, span_BxKxS

  def loss(self, params, batch, key, deterministic: bool = False):
    """L_retriever + L_reader (`reader.reader_loss`) and its metrics, plus the gold documents' recall at k."""
    retriever_BxK, span_BxKxS = self.logits(params, batch, key, deterministic=deterministic)
    loss, metrics = reader.reader_loss(retriever_BxK, span_BxKxS, batch["correct"], batch["allowed"])
    valid = batch["gold_valid"]
    metrics["gold_recall_at_k"] = (batch["gold_hit"] * valid).sum() / jax.numpy.maximum(valid.sum(), 1.0)
    return loss, metrics

  def predict(self, params, batch):
    """(doc_index_B, span_index_B): ORQA's argmax over (document, span) of f(x, z) + score(z, s)."""
    retriever_BxK, span_BxKxS = self.logits(params, batch, jax.random.key(EVAL_KEY), deterministic=True)
    return reader.best_answer(retriever_BxK, span_BxKxS, batch["allowed"])


def _with_source(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  return {**batch, "source_doc": np.full(len(batch["question"]), -1, np.int32)}  # nothing excluded in QA


def make_task(config: ml_collections.ConfigDict) -> tuple[train_lib.Task, OpenQA, dict[str, Any]]:
  """(task, run, info): the data built, the index and the loop's Task wired; info holds the questions and sizes."""
  from core.data import corpora as core_corpora
  from core.data import pipeline, tokenizers

  tokenizer = tokenizers.WordPieceTokenizer(core_corpora.bert_vocab_path())
  if pretrain.model_config(config).encoder.vocab_size != tokenizer.vocab_size:
    raise config_lib.ConfigError(f"model.vocab_size: must equal the tokenizer's {tokenizer.vocab_size}")
  d = config.data
  qa = openqa_data.build(d.dataset, max_docs=d.max_docs, max_questions=d.max_questions, dev_fraction=d.dev_fraction,
                         seed=config.seed, tfds_dir=d.tfds_dir)
  if config.realm.k >= len(qa.documents):
    raise config_lib.ConfigError(f"realm.k: {config.realm.k} must be < the corpus of {len(qa.documents)} documents")
  rows = data_lib.document_rows(tokenizer, qa.documents, d.doc_len)
  train_q = openqa_data.question_rows(tokenizer, qa.train, d.query_len)
  dev_q = openqa_data.question_rows(tokenizer, qa.dev[: config.eval.max_questions or None], d.query_len)
  mesh = sharding_lib.make_mesh(config.mesh.data, config.mesh.model)
  run = OpenQA(config, rows, mesh, sep_id=tokenizer.sep_id)
  initial = None
  if config.realm_from:
    initial = load_realm(config.realm_from, jax.eval_shape(run.init_params, jax.random.key(0)))
  elif config.init_from or config.retriever_from:  # the loop's own init key (core.train.init_params) for the rest
    fresh = jax.device_get(jax.jit(run.init_params)(jax.random.fold_in(jax.random.key(config.seed), 0)))
    initial = pretrain.load_initial_params(config, fresh)
  batch_size = config.train.batch_size

  def train_data(shard_index, shard_count):
    ds = pipeline.classification_dataset(train_q.features(), np.zeros(train_q.size, np.int32), batch_size,
                                         seed=config.seed, num_epochs=None, drop_remainder=True)
    ds = pipeline.take_host_rows(ds, shard_index, shard_count)
    return ds.map(lambda b: run.reader_batch(run.index.retrieve(_with_source(
      {k: v for k, v in b.items() if k != "label"})), train_q.answer_ids))

  predict = jax.jit(run.predict)
  info: dict[str, Any] = {"documents": len(qa.documents), "train_questions": train_q.size,
                          "dev_questions": dev_q.size, "predictions": [], "train_rows": train_q, "dev_rows": dev_q}

  def eval_fn(params, step):
    del step
    features, size, scored = dev_q.features(), dev_q.size, []
    for start in range(0, size, config.eval.batch_size):
      rows_B = np.arange(start, start + config.eval.batch_size).clip(max=size - 1)  # padded: one compiled shape
      retrieved = run.index.retrieve_with(params["query_embedder"], _with_source({k: v[rows_B] for k, v in
                                                                                  features.items()}))
      batch = run.reader_batch(retrieved, dev_q.answer_ids)
      doc_B, span_B = jax.device_get(predict(params, {k: v for k, v in batch.items() if k in MODEL_INPUTS}))
      n = min(config.eval.batch_size, size - start)
      scored += openqa_data.score_predictions(tokenizer, qa.documents, [dev_q.examples[i] for i in rows_B[:n]],
                                              batch, doc_B, span_B, run.starts_S, run.ends_S)
    out = {name: float(np.mean([row[name] for row in scored])) for name in openqa_data.SCORES}
    out["exact_match"] = reader.exact_match_score([row["prediction"] for row in scored],
                                                  [row["answers"] for row in scored])
    info["predictions"] = [{name: row[name] for name in ("question", "prediction", "answers")}
                           for row in scored[: config.eval.predictions]]
    return out

  task = train_lib.Task(
    init_params=run.init_params,
    loss_fn=run.loss,
    train_data=train_data,
    eval_fn=eval_fn,
    hooks=(run.index,),
    initial_params=initial,
    trainable=TRAINABLE,
  )
  return task, run, info


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, command: str = "") -> train_lib.TrainResult:
  started = time.perf_counter()
  validate(config)
  task, _, info = make_task(config)
  result = train_lib.train(config, workdir, task)
  results_path = os.path.join(workdir, "results.json")
  if result.resumed_from == config.train.total_steps and os.path.exists(results_path):
    return result  # a finished run, read back: its results (eval, predictions, timings) stay as that run wrote them
  if jax.process_index() == 0:
    evals = [h for h in result.history if h["split"] == "eval"]
    train = [h for h in result.history if h["split"] == "train"]
    steps_per_second = [h["steps_per_second"] for h in train[1:]] or [h["steps_per_second"] for h in train]
    summary = {
      "command": command,
      "final_eval": evals[-1] if evals else None,
      "steps": config.train.total_steps,
      "seconds": time.perf_counter() - started,
      "seconds_per_step": 1.0 / float(np.mean(steps_per_second)) if steps_per_second else None,
      **{name: info[name] for name in ("documents", "train_questions", "dev_questions")},
      "predictions": info["predictions"],
    }
    with open(results_path, "w") as f:
      json.dump({**summary, "history": result.history}, f, indent=1)
    if config.results_dir:
      os.makedirs(config.results_dir, exist_ok=True)
      path = os.path.join(config.results_dir, f"realm_openqa_{config.data.dataset}.json")
      with open(path, "w") as f:
        json.dump({**summary, "config": config.to_dict()}, f, indent=1)
  return result


if __name__ == "__main__":
  _COMMAND = shlex.join(["python", "-m", "realm_jax.openqa", *sys.argv[1:]])
  main_lib.run_main(lambda config, workdir: train_and_evaluate(config, workdir, _COMMAND), validate,
                    "configs/realm/openqa.py")
