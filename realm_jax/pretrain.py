"""REALM pretraining: masked-token marginal likelihood over retrieved documents, index refreshed in the loop.

REALM, arXiv 2002.08909 §3 (Eq. 1-5), §3.3 (stale index, fresh scores), §3.4 (salient spans, null document, no
trivial retrieval, ICT warm start); US 11,003,865 claim 1, steps 1-8 (the step-by-step map is in realm_jax/README.md).

  python -m realm_jax.pretrain --config=configs/realm/pretrain.py --workdir=/tmp/realm           # synthetic, CPU
  python -m realm_jax.pretrain --config=configs/realm/pretrain.py:size=base,corpus=bundled --workdir=...

One step: the batch's masked queries come with the top-k documents the index found (`realm_jax.index`, a
`core.train.HostHook` that re-embeds the corpus every `realm.refresh_every` steps) plus ∅; the loss recomputes
f(x, z) with the current embedders (gradients reach both), p(z | x) over the K = k + 1 candidates, p(y | z, x) from
the knowledge-augmented encoder at the masked positions, and −log p(y | x). The evaluation scores held-out queries
with retrieval and with ∅ alone; on the synthetic corpus those are held-out entities, so ∅ alone is at chance.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from core import bert as bert_lib
from core import config as config_lib
from core import main as main_lib
from core import sharding as sharding_lib
from core import train as train_lib
from realm_jax import data as data_lib
from realm_jax import index as index_lib
from realm_jax import masking
from realm_jax import model as model_lib
from realm_jax import objective
from realm_jax import synthetic

CORPORA = ("synthetic", "bundled")
INIT_FROM = ("", "minilm")
EVAL_KEY = 4321


def model_config(config: ml_collections.ConfigDict) -> model_lib.RealmConfig:
  try:
    encoder = bert_lib.from_model_section(config_lib.get(config, "model"))
    return model_lib.RealmConfig(
      encoder, config_lib.get(config, "realm.proj_size"), config_lib.get(config, "realm.pooling")
    ).validate()
  except (TypeError, ValueError) as e:
    raise config_lib.ConfigError(f"model: {' '.join(str(e).split())}") from None


def _check_source(config, field: str, allowed) -> None:
  value = config_lib.get(config, field)
  if not isinstance(value, str) or not (value in allowed or os.path.isdir(os.path.expanduser(value))):
    raise config_lib.ConfigError(
      f"{field}: {value!r} is neither a directory nor one of {', '.join(repr(x) for x in allowed)}"
    )


def validate(config: ml_collections.ConfigDict) -> None:
  """One-line ConfigErrors before any data is read or any directory is written."""
  train_lib.validate(config)
  cfg = model_config(config)
  config_lib.check_choice(config, "data.corpus", CORPORA)
  config_lib.check_choice(config, "data.masking", tuple(masking.MASKERS))
  config_lib.check_int(config, "data.query_len", minimum=4)
  config_lib.check_int(config, "data.doc_len", minimum=4)
  config_lib.check_int(config, "data.max_masks", minimum=1)
  if config.data.max_masks >= config.data.query_len:
    raise config_lib.ConfigError(f"data.max_masks: {config.data.max_masks} must be < data.query_len")
  joined = config.data.query_len + config.data.doc_len - 1
  if joined > cfg.encoder.max_position_embeddings:
    raise config_lib.ConfigError(
      f"data.doc_len: join(x, z) of {joined} tokens exceeds model.max_position_embeddings "
      f"{cfg.encoder.max_position_embeddings}"
    )
  config_lib.check_int(config, "data.num_entities", minimum=2, maximum=synthetic.MAX_ENTITIES)
  config_lib.check_choice(config, "data.synthetic_corpus", ("profiles", "profiles_and_biographies"))
  config_lib.check_range(config, "data.heldout_fraction", 0.0, 1.0)
  config_lib.check_int(config, "data.max_docs", minimum=0)
  config_lib.check_int(config, "data.max_queries", minimum=0)
  config_lib.check_int(config, "realm.k", minimum=1)
  if config.data.corpus == "synthetic":
    size = config.data.num_entities * (1 if config.data.synthetic_corpus == "profiles" else 2)
    if config.realm.k > size - 1:
      raise config_lib.ConfigError(f"realm.k: {config.realm.k} is larger than the corpus of {size} documents minus one")
  if config.data.corpus == "bundled" and 0 < config.data.max_docs <= config.realm.k:
    raise config_lib.ConfigError(f"realm.k: {config.realm.k} must be < data.max_docs {config.data.max_docs}")
  config_lib.check_int(config, "realm.refresh_every", minimum=1)
  config_lib.check_int(config, "realm.embed_batch", minimum=1)
  config_lib.check_choice(config, "realm.index_backend", index_lib.BACKENDS)
  config_lib.check_bool(config, "realm.per_mask")
  config_lib.check_range(config, "realm.retriever_lr_multiplier", 0.0, 1.0, inclusive=True)
  config_lib.check_int(config, "realm.retriever_delay_steps", minimum=0)
  config_lib.check_int(config, "realm.eval_queries", minimum=1)
  _check_source(config, "init_from", INIT_FROM)
  _check_source(config, "retriever_from", ("",))
  _check_source(config, "reader_from", ("",))


def build_data(config: ml_collections.ConfigDict, tokenizer) -> tuple[list, data_lib.QueryArrays, data_lib.QueryArrays]:
  """(documents, train queries, held-out queries) of the configured corpus."""
  d = config.data
  if d.corpus == "synthetic":
    kb = synthetic.synthetic_knowledge(d.num_entities, d.heldout_fraction, seed=config.seed)
    documents, ids = synthetic.retrieval_corpus(kb, d.synthetic_corpus)

    def arrays(queries, seed):
      return data_lib.masked_queries(
        tokenizer,
        [q.text for q in queries],
        source_docs=[ids.get(q.source_doc_id, -1) for q in queries],  # -1: the biography is not in Z
        gold_docs=[[ids[q.gold_doc_id]] for q in queries],
        spans=[q.answer_span for q in queries],
        query_len=d.query_len,
        max_masks=d.max_masks,
        seed=seed,
      )

    return documents, arrays(kb.train_queries, 0), arrays(kb.heldout_queries, 1)
  from realm_jax import corpora

  documents = corpora.knowledge_corpus(max_docs=d.max_docs or None, seed=config.seed)
  # Queries are sentences of the corpus's own documents (REALM pretrains on the corpus it retrieves from).
  texts, sources = [], []
  for doc in documents:
    for start, end in masking.sentence_bounds(doc.text):
      if masking.has_salient_span(doc.text[start:end]) or d.masking != "salient_span":
        texts.append(doc.text[start:end])
        sources.append(doc.doc_id)
  order = np.random.default_rng(config.seed).permutation(len(texts))
  if d.max_queries:
    order = order[: d.max_queries]
  texts, sources = [texts[i] for i in order], [sources[i] for i in order]
  queries = data_lib.masked_queries(
    tokenizer, texts, source_docs=sources, query_len=d.query_len, max_masks=d.max_masks, kind=d.masking, seed=0
  )
  n_eval = max(1, min(config.realm.eval_queries, queries.size // 10))
  split = queries.size - n_eval
  return documents, _take(queries, np.arange(split)), _take(queries, np.arange(split, queries.size))


def _take(queries: data_lib.QueryArrays, rows: np.ndarray) -> data_lib.QueryArrays:
  return data_lib.QueryArrays(*(getattr(queries, f.name)[rows] for f in queries.__dataclass_fields__.values()))


def realm_index(model: model_lib.Realm, documents: data_lib.DocumentRows, config: ml_collections.ConfigDict,
                query_template: Any, mesh=None, cls: type = index_lib.IndexRefresh) -> index_lib.IndexRefresh:
  """The `IndexRefresh` (or subclass `cls`) over a `model.Realm`'s two embedders, from the `realm` config section:
  documents embedded by Embed_doc, queries by Embed_input (Eq. 1), top-k by the configured backend."""
  apply = model.apply
  return cls(
    documents,
    embed_documents=lambda p, ids, mask: apply({"params": {"doc_embedder": p}}, ids, mask,
                                              method=model_lib.Realm.embed_documents),
    embed_query=lambda p, ids, mask: apply({"params": {"query_embedder": p}}, ids, mask,
                                          method=model_lib.Realm.embed_query),
    select=lambda params: (params["query_embedder"], params["doc_embedder"]),
    query_template=query_template,
    proj_size=model.config.proj_size,
    k=config.realm.k,
    refresh_every=config.realm.refresh_every,
    backend=config.realm.index_backend,
    embed_batch=config.realm.embed_batch,
    mesh=mesh,
    progress=config.train.progress,
  )


class Pretraining:
  """The model, its loss and the index hook of one configured run (what `make_task` wires into `core.train`)."""

  def __init__(self, config: ml_collections.ConfigDict, documents: data_lib.DocumentRows, mesh=None):
    self.config, self.cfg = config, model_config(config)
    self.model = model_lib.Realm(self.cfg)
    self.documents = documents
    self.eval_batches: list[dict[str, np.ndarray]] = []  # the held-out queries (make_task fills them)
    self.template = jax.eval_shape(self.init_params, jax.random.key(0))
    self.index = realm_index(self.model, documents, config, self.template["query_embedder"], mesh)

  def init_params(self, key):
    d = self.config.data
    return model_lib.init_params(self.model, key, d.query_len, d.doc_len, d.max_masks)

  def scores(self, params, batch, key, *, deterministic: bool):
    """(log p(z|x)_BxK, log p(y_m|z,x)_BxKxM, log_probs_BxKxMxV) for a retrieved batch (Eq. 1-3)."""
    apply = functools.partial(self.model.apply, {"params": params}, deterministic=deterministic)
    query_key, doc_key, reader_key = jax.random.split(key, 3)
    b, k, ld = batch["candidate_ids"].shape
    query_BxD = apply(batch["query_ids"], batch["query_mask"], method=model_lib.Realm.embed_query,
                      rngs={"dropout": query_key})
    docs_BxKxD = apply(batch["candidate_ids"].reshape(b * k, ld), batch["candidate_mask"].reshape(b * k, ld),
                       method=model_lib.Realm.embed_documents, rngs={"dropout": doc_key}).reshape(b, k, -1)
    log_p_z_BxK = objective.log_p_z_given_x(objective.relevance(query_BxD, docs_BxKxD), batch["candidate_valid"])
    joined = model_lib.join(batch["query_ids"], batch["query_mask"], batch["candidate_ids"], batch["candidate_mask"])
    length = joined[0].shape[-1]
    m = batch["mask_positions"].shape[1]
    positions = jnp.broadcast_to(batch["mask_positions"][:, None], (b, k, m)).reshape(b * k, m)
    log_probs = apply(*(x.reshape(b * k, length) for x in joined), positions, method=model_lib.Realm.read,
                      rngs={"dropout": reader_key})
    log_probs_BxKxMxV = log_probs.reshape(b, k, m, -1)
    return log_p_z_BxK, objective.token_log_probs(log_probs_BxKxMxV, batch["mask_labels"]), log_probs_BxKxMxV

  def loss(self, params, batch, key, deterministic: bool = False):
    """−log p(y | x) averaged over the queries (Eq. 5), and the logged metrics."""
    log_p_z_BxK, log_p_y_BxKxM, log_probs_BxKxMxV = self.scores(params, batch, key, deterministic=deterministic)
    weights_BxM = batch["mask_weights"]
    marginal_B, count_B = objective.marginal_log_likelihood(
      log_p_z_BxK, log_p_y_BxKxM, weights_BxM, per_mask=self.config.realm.per_mask
    )
    has_B = (count_B > 0).astype(jnp.float32)
    queries = jnp.maximum(has_B.sum(), 1.0)
    predictions_BxM = objective.marginal_predictions(log_p_z_BxK, log_probs_BxKxMxV)
    correct_B = jnp.all((predictions_BxM == batch["mask_labels"]) | (weights_BxM == 0), axis=-1)
    gold_queries = jnp.maximum(batch["gold_valid"].sum(), 1.0)
    utility_B = objective.retrieval_utility(marginal_B, log_p_y_BxKxM[:, 0], weights_BxM)
    metrics = {
      "log_p_y_given_x": (marginal_B * has_B).sum() / queries,
      "retrieval_utility": (utility_B * has_B).sum() / queries,
      "accuracy": (correct_B * has_B).sum() / queries,
      "p_null": jnp.exp(log_p_z_BxK[:, 0]).mean(),
      "gold_recall_at_k": (batch["gold_hit"] * batch["gold_valid"]).sum() / gold_queries,
    }
    return -metrics["log_p_y_given_x"], metrics

  def null_accuracy(self, params, batch, key):
    """Accuracy with ∅ as the only candidate: the reader without retrieval (chance on held-out entities)."""
    null = {**batch, **{name: batch[name][:, :1] for name in ("candidate_ids", "candidate_mask", "candidate_valid")}}
    return self.loss(params, null, key, deterministic=True)[1]["accuracy"]


def load_initial_params(config: ml_collections.ConfigDict, fresh: Any) -> dict[str, Any] | None:
  """Whole top-level subtrees for `core.train.Task.initial_params`: the imported encoder in all three networks
  (`init_from`; the projections, and the MLM head when the checkpoint has none, e.g. MiniLM, keep their fresh init
  from `fresh`, one projection shared by the two embedders), the ICT-trained embedders (`retriever_from`) and a
  saved reader (`reader_from`, `realm_jax.warm_start`), checked against the model's shapes."""
  from core import bert_import
  from core.data import corpora

  def check(name: str, want: Any, got: Any) -> None:
    if jax.tree.map(np.shape, want) != jax.tree.map(np.shape, got):
      raise config_lib.ConfigError(f"{name}: the checkpoint's shapes differ from the model section's")

  initial: dict[str, Any] = {}
  if config.init_from:
    path = corpora.minilm_dir() if config.init_from == "minilm" else config.init_from
    _, encoder = bert_import.load_hf_bert(path)
    check("init_from", fresh["reader"]["encoder"], encoder)
    for name in ("query_embedder", "doc_embedder", "reader"):
      initial[name] = {**fresh[name], "encoder": encoder}
    # One encoder in both towers: with one projection too, f(x, z) starts as the imported encoder's own (projected)
    # similarity; two independent random projections would make it noise, and no retrieved document would hold
    # the answer to learn from (§3.4: a cold retriever never starts). An ICT retriever replaces both below.
    initial["query_embedder"]["projection"] = initial["doc_embedder"]["projection"]
  if config.retriever_from:
    from realm_jax import ict

    retriever = ict.load_retriever(config.retriever_from)
    for name in ("query_embedder", "doc_embedder"):
      check("retriever_from", fresh[name], retriever[name])
      initial[name] = retriever[name]
  if config.get("reader_from"):
    from realm_jax import warm_start

    initial["reader"] = warm_start.load_reader(config.reader_from, fresh["reader"])
  return initial or None


def make_task(config: ml_collections.ConfigDict) -> tuple[train_lib.Task, Pretraining]:
  from core.data import corpora, pipeline, tokenizers

  tokenizer = tokenizers.WordPieceTokenizer(corpora.bert_vocab_path())
  if model_config(config).encoder.vocab_size != tokenizer.vocab_size:
    raise config_lib.ConfigError(f"model.vocab_size: must equal the tokenizer's {tokenizer.vocab_size}")
  documents, train_queries, eval_queries = build_data(config, tokenizer)
  rows = data_lib.document_rows(tokenizer, documents, config.data.doc_len)
  mesh = sharding_lib.make_mesh(config.mesh.data, config.mesh.model)
  run = Pretraining(config, rows, mesh)
  initial = None
  if config.init_from or config.retriever_from or config.get("reader_from"):
    # the loop's own init key (core.train.init_params) for the parts no checkpoint provides
    fresh = jax.device_get(jax.jit(run.init_params)(jax.random.fold_in(jax.random.key(config.seed), 0)))
    initial = load_initial_params(config, fresh)
  batch_size = config.train.batch_size

  def train_data(shard_index, shard_count):
    ds = pipeline.classification_dataset(
      {k: v for k, v in train_queries.row(slice(None)).items()},
      np.zeros(train_queries.size, np.int32),
      batch_size,
      seed=config.seed,
      num_epochs=None,
      drop_remainder=True,
    )
    ds = pipeline.take_host_rows(ds, shard_index, shard_count)
    return ds.map(lambda batch: run.index.retrieve({k: v for k, v in batch.items() if k != "label"}))

  eval_batches = [eval_queries.batch(np.arange(s, min(s + batch_size, eval_queries.size)))
                  for s in range(0, min(eval_queries.size, config.realm.eval_queries), batch_size)]
  run.eval_batches = eval_batches
  eval_step = jax.jit(lambda params, batch, key: run.loss(params, batch, key, deterministic=True)[1])
  null_step = jax.jit(run.null_accuracy)

  def eval_fn(params, step):
    del step
    totals: dict[str, float] = {}
    count = 0
    for i, batch in enumerate(eval_batches):
      retrieved = run.index.retrieve(batch)
      key = jax.random.fold_in(jax.random.key(EVAL_KEY), i)
      metrics = jax.device_get(eval_step(params, retrieved, key))
      metrics["null_accuracy"] = null_step(params, retrieved, key)
      n = len(batch["query_ids"])
      for name, value in metrics.items():
        totals[name] = totals.get(name, 0.0) + float(value) * n
      count += n
    return {name: value / count for name, value in totals.items()}

  retriever_lr, delay = config.realm.retriever_lr_multiplier, config.realm.retriever_delay_steps

  def retriever_factor(step):  # the embedders wait `delay` steps (the reader's warm-up), then train at retriever_lr
    return jnp.where(step < delay, 0.0, retriever_lr)

  def lr_multipliers(params):
    factor = retriever_factor if delay else retriever_lr
    return {name: jax.tree.map(lambda _: factor if name.endswith("_embedder") else 1.0, tree)
            for name, tree in params.items()}

  task = train_lib.Task(
    init_params=run.init_params,
    lr_multipliers=None if retriever_lr == 1.0 and not delay else lr_multipliers,
    loss_fn=run.loss,
    train_data=train_data,
    eval_fn=eval_fn,
    hooks=(run.index,),
    initial_params=initial,
  )
  return task, run


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train_lib.TrainResult:
  validate(config)
  task, run = make_task(config)
  started = time.perf_counter()
  result = train_lib.train(config, workdir, task)
  seconds = time.perf_counter() - started
  results_path = os.path.join(workdir, "results.json")
  if result.resumed_from == config.train.total_steps and os.path.exists(results_path):
    return result  # a finished run, read back: its results (history, timings) stay as that run wrote them
  if jax.process_index() == 0:
    index_dir = os.path.join(workdir, "index")
    os.makedirs(index_dir, exist_ok=True)
    np.save(os.path.join(index_dir, "embeddings.npy"), run.index.embeddings_NxD)
    # The evaluation queries embedded as the index searches them: benchmarks/realm/mips.py --realm_workdir reads
    # both files (ScaNN against exact search on the model's own embeddings).
    queries = np.concatenate([run.index.embed_queries(b["query_ids"], b["query_mask"]) for b in run.eval_batches])
    np.save(os.path.join(index_dir, "queries.npy"), queries)
    evals = [h for h in result.history if h["split"] == "eval"]
    with open(results_path, "w") as f:
      json.dump({"final_eval": evals[-1] if evals else None, "history": result.history,
                 "index_embedded_at": run.index.embedded_at, "index_refreshes": run.index.refreshes,
                 "train_seconds": seconds, "refresh_seconds": run.index.refresh_seconds_total,
                 "refresh_share": run.index.refresh_seconds_total / max(seconds, 1e-9)}, f, indent=1)
  return result


if __name__ == "__main__":
  main_lib.run_main(train_and_evaluate, validate, "configs/realm/pretrain.py")
