"""The Inverse Cloze Task (ICT) warm start of REALM's retriever: `python -m realm_jax.ict`.

REALM, arXiv 2002.08909 §3.4 "ICT warm start" (a retriever trained from scratch gets no useful gradient, so
Embed_input and Embed_doc start from ICT); ORQA, Lee et al. 2019, arXiv 1906.00300 §5 "Inverse Cloze Task":

  S(b, q) = h_qᵀ h_b,   P_ICT(b | q) = exp(S(b, q)) / Σ_{b' ∈ BATCH} exp(S(b', q)),

the loss is −log P_ICT(b_i | q_i) averaged over the batch (each pseudo-query's own context is the positive, the
other contexts of the batch the negatives; `ict_loss`), the metric the in-batch accuracy (recall@1 among the batch).
US 11,003,865 claim 1, steps 2-3: h_q = Embed_input(q) and h_b = Embed_doc(b), the two learned embedding functions,
are `realm_jax.model.Embedder`s named `query_embedder` and `doc_embedder` (separate params, the shapes of
`realm_jax.model.Realm`), so `load_retriever(workdir)` gives subtrees that drop straight into Realm's params.
Examples: `realm_jax.ict_data` (a sentence as the query, removed from its context with `ict.remove_probability`;
single-sentence documents skipped). Evaluation: recall@1 / @5 of each held-out document's fixed pseudo-query finding
its source document among the corpus by exact search (`core.mips.exact_topk`), the held-out documents never being
training examples. Init: random, or `init_from` 'minilm' / a HuggingFace BERT directory loaded into both encoders;
the 128-d projections are random either way. `realm.pooling` reads [CLS] (the paper) or the token mean (MiniLM).
Shape suffixes: B batch, L length, N documents, Q queries, K neighbours, D = proj_size.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from core import bert_import, mips, pretrained, pretraining
from core import bert as bert_lib
from core import checkpoint as checkpoint_lib
from core import config as config_lib
from core import main as main_lib
from core import train as train_lib
from core import tree as tree_lib
from realm_jax import data as data_lib
from realm_jax import ict_data, ict_spec
from realm_jax import model as model_lib
from realm_jax import synthetic
from realm_jax.ict_spec import RetrieverSpec, retriever_spec  # noqa: F401 - public: a REALM run checks shapes

Array = jax.Array
CORPORA = ("synthetic", "wordnet_wikipedia", "wikipedia")  # wikipedia: tfds wikipedia/20230601.en (paper scale)
INIT_FROM = ("", "minilm")  # or a HuggingFace BERT directory
RECALL_AT = (1, 5)
EVAL_CHUNK = 128  # rows embedded per jitted call at evaluation (the last chunk is padded)


class IctRetriever(nn.Module):
  """Embed_input and Embed_doc (claim 1 steps 2-3) under {'query_embedder', 'doc_embedder'}, as in `Realm`."""

  config: model_lib.RealmConfig

  def setup(self):
    self.query_embedder = model_lib.Embedder(self.config, name="query_embedder")
    self.doc_embedder = model_lib.Embedder(self.config, name="doc_embedder")

  def __call__(self, query_ids_BxL, query_mask_BxL, context_ids_BxL, context_mask_BxL, *, deterministic=True):
    """(h_q query_BxD, h_b context_BxD)."""
    return (
      self.embed_query(query_ids_BxL, query_mask_BxL, deterministic=deterministic),
      self.embed_documents(context_ids_BxL, context_mask_BxL, deterministic=deterministic),
    )

  def embed_query(self, ids_BxL: Array, mask_BxL: Array, *, deterministic: bool = True) -> Array:
    return self.query_embedder(ids_BxL, mask_BxL, deterministic=deterministic)

  def embed_documents(self, ids_NxL: Array, mask_NxL: Array, *, deterministic: bool = True) -> Array:
    return self.doc_embedder(ids_NxL, mask_NxL, deterministic=deterministic)


def ict_loss(query_BxD: Array, context_BxD: Array) -> tuple[Array, Array]:
  """ORQA §5: (mean over i of −log P_ICT(b_i | q_i) with the batch's contexts as candidates, in-batch accuracy)."""
  scores_BxB = jnp.einsum("bd,cd->bc", query_BxD, context_BxD, preferred_element_type=jnp.float32)
  log_p_BxB = jax.nn.log_softmax(scores_BxB, axis=-1)
  labels_B = jnp.arange(scores_BxB.shape[0])
  loss = -jnp.mean(jnp.diagonal(log_p_BxB))
  return loss, jnp.mean((jnp.argmax(scores_BxB, axis=-1) == labels_B).astype(jnp.float32))


def realm_config(config: ml_collections.ConfigDict) -> model_lib.RealmConfig:
  """The embedders: the `model` section (BertConfig fields), `realm.proj_size` and `realm.pooling`."""
  realm = config_lib.get(config, "realm")
  return model_lib.RealmConfig(pretraining.model_config(config), realm.proj_size, realm.pooling)


def validate(config: ml_collections.ConfigDict) -> None:
  """One-line ConfigErrors before any data is read or any directory is written."""
  train_lib.validate(config)
  encoder = pretraining.model_config(config)
  config_lib.check_int(config, "realm.proj_size", minimum=1)
  config_lib.check_choice(config, "realm.pooling", model_lib.POOLINGS)
  micro = config.train.batch_size // config.train.grad_accum_steps
  if micro < 2:
    raise config_lib.ConfigError(
      f"train.batch_size: {config.train.batch_size} (micro-batch {micro}) must be >= 2: the in-batch softmax "
      "needs other contexts as negatives"
    )
  config_lib.check_range(config, "ict.remove_probability", 0.0, 1.0, inclusive=True)
  config_lib.check_choice(config, "data.corpus", CORPORA)
  config_lib.check_int(config, "data.num_entities", minimum=3, maximum=synthetic.MAX_ENTITIES)
  config_lib.check_int(config, "data.max_docs", minimum=0)
  config_lib.check_int(config, "data.block_words", minimum=1)
  config_lib.check_int(config, "data.query_len", minimum=3, maximum=encoder.max_position_embeddings)
  config_lib.check_int(config, "data.doc_len", minimum=4, maximum=encoder.max_position_embeddings)
  if not isinstance(config_lib.get(config, "data.vocab_path"), str):
    raise config_lib.ConfigError(f"data.vocab_path: must be a path or '', got {config.data.vocab_path!r}")
  if config.data.vocab_path:
    config_lib.check_file(config, "data.vocab_path", pretraining.VOCAB_HINT)
  if not isinstance(config_lib.get(config, "data.tfds_dir"), str):
    raise config_lib.ConfigError(f"data.tfds_dir: must be a directory, gs://... or '', got {config.data.tfds_dir!r}")
  if config.data.corpus == "wikipedia":
    config_lib.check_data_dir(config, "data.tfds_dir")
  config_lib.check_int(config, "eval.num_queries", minimum=1)
  config_lib.check_int(config, "eval.max_corpus", minimum=0)
  if config.eval.max_corpus and config.eval.max_corpus < config.eval.num_queries:
    raise config_lib.ConfigError(
      f"eval.max_corpus: {config.eval.max_corpus} < eval.num_queries {config.eval.num_queries} (0 = all documents)"
    )
  config_lib.check_choice(config, "data.synthetic_corpus", ("profiles", "profiles_and_biographies"))
  if config.data.corpus == "synthetic":  # every synthetic document has 4 sentences: the split is known here
    docs = config.data.num_entities * (1 if config.data.synthetic_corpus == "profiles" else 2)
    if config.eval.num_queries + config.train.batch_size > docs:
      raise config_lib.ConfigError(
        f"eval.num_queries: {config.eval.num_queries} held out + train.batch_size {config.train.batch_size} "
        f"exceed the {docs} synthetic documents of data.synthetic_corpus {config.data.synthetic_corpus!r}"
      )
  init_from = config_lib.get(config, "init_from")
  if not isinstance(init_from, str) or not (init_from in INIT_FROM or os.path.isdir(os.path.expanduser(init_from))):
    raise config_lib.ConfigError(
      f"init_from: unknown value {init_from!r} (allowed: '', 'minilm' or a HuggingFace BERT directory)"
    )


def load_documents(config: ml_collections.ConfigDict) -> list:
  """The knowledge corpus (`realm_jax.corpora.Document`s, doc_id = position)."""
  data = config.data
  if data.corpus == "synthetic":
    kb = synthetic.synthetic_knowledge(num_entities=data.num_entities)
    return synthetic.retrieval_corpus(kb, data.synthetic_corpus)[0]  # the Z that pretraining retrieves from
  if data.corpus == "wordnet_wikipedia":
    from realm_jax import corpora

    return corpora.knowledge_corpus(("wordnet", "wikipedia"), max_docs=data.max_docs or None)
  from core import data as core_data

  try:
    source = core_data.paper_dataset("wikipedia", "train", data_dir=data.tfds_dir or None)
  except (FileNotFoundError, RuntimeError, ImportError, ValueError) as e:
    raise config_lib.ConfigError(f"data.corpus: 'wikipedia' is not available here: {e}") from None
  return ict_data.wikipedia_blocks(source, data.block_words, data.max_docs)


def pretrained_encoder(config: ml_collections.ConfigDict, encoder: bert_lib.BertConfig) -> dict:
  """`init_from`'s encoder params (float32 numpy), after checking its shapes against the `model` section."""
  from core.data import corpora

  path = corpora.minilm_dir() if config.init_from == "minilm" else Path(os.path.expanduser(config.init_from))
  try:
    loaded, params = bert_import.load_hf_bert(path)
  except (ValueError, OSError) as e:
    raise config_lib.ConfigError(f"init_from: {str(path)!r} is not loadable: {str(e).splitlines()[0]}") from None
  for name in ict_spec.SHAPE_FIELDS:
    have, want = getattr(loaded, name) or 0, getattr(encoder, name) or 0
    if have != want:
      raise config_lib.ConfigError(f"init_from: {str(path)!r} has {name} {have}, model.{name} is {want}")
  return jax.tree.map(lambda x: np.asarray(x, np.float32), params)


def _dummy_rows(query_len: int, doc_len: int):
  q, c = jnp.zeros((1, query_len), jnp.int32), jnp.zeros((1, doc_len), jnp.int32)
  return q, jnp.ones_like(q), c, jnp.ones_like(c)


def make_eval_fn(model: IctRetriever, data: ict_data.IctData, max_corpus: int):
  """eval(params, step) -> {recall_at_1, recall_at_5, chance_at_5}: held-out pseudo-queries against the corpus
  ('[CLS] title [SEP] text [SEP]' rows, `realm_jax.data.document_rows`), exact MIPS (REALM §3.3)."""
  corpus, targets_Q = ict_data.eval_corpus(data.documents, data.eval_indices, max_corpus)
  docs = data_lib.document_rows(data.tokenizer, corpus, data.doc_len)
  queries = data.tokenizer.encode_batch([e.query for e in data.eval_examples()], max_length=data.query_len)
  k = min(max(RECALL_AT), docs.size)
  embed = {
    name: jax.jit(lambda params, ids, mask, method=method: model.apply({"params": params}, ids, mask, method=method))
    for name, method in (("query", IctRetriever.embed_query), ("doc", IctRetriever.embed_documents))
  }

  def embed_all(params, name, ids_NxL, mask_NxL) -> np.ndarray:
    n, chunk = len(ids_NxL), min(EVAL_CHUNK, len(ids_NxL))
    pad = (-n) % chunk  # padded with copies of row 0 so every call has one shape
    ids_NxL = np.concatenate([ids_NxL, np.repeat(ids_NxL[:1], pad, 0)])
    mask_NxL = np.concatenate([mask_NxL, np.repeat(mask_NxL[:1], pad, 0)])
    out = [embed[name](params, ids_NxL[i : i + chunk], mask_NxL[i : i + chunk]) for i in range(0, n + pad, chunk)]
    return np.concatenate([np.asarray(x) for x in out])[:n]

  def eval_fn(params, step) -> dict[str, float]:
    del step
    docs_NxD = embed_all(params, "doc", docs.ids_NxL, docs.mask_NxL)
    queries_QxD = embed_all(params, "query", queries["input_ids"], queries["attention_mask"])
    _, top_QxK = mips.exact_topk(queries_QxD, docs_NxD, k)
    hit_QxK = np.asarray(top_QxK) == targets_Q[:, None]
    metrics = {f"recall_at_{r}": float(hit_QxK[:, :r].any(axis=1).mean()) for r in RECALL_AT if r <= k}
    return {**metrics, f"chance_at_{k}": k / docs.size}

  return eval_fn


def make_task(config: ml_collections.ConfigDict) -> train_lib.Task:
  from core.data import corpora, tokenizers

  tokenizer = tokenizers.WordPieceTokenizer(config.data.vocab_path or corpora.bert_vocab_path())
  cfg = realm_config(config)
  if cfg.encoder.vocab_size != tokenizer.vocab_size:
    raise config_lib.ConfigError(
      f"model.vocab_size: {cfg.encoder.vocab_size} != the tokenizer's {tokenizer.vocab_size} entries"
    )
  documents = load_documents(config)
  try:
    train_docs, eval_docs = ict_data.split_documents(documents, config.eval.num_queries)
  except ValueError as e:
    raise config_lib.ConfigError(str(e)) from None
  if config.train.batch_size > len(train_docs):
    raise config_lib.ConfigError(
      f"train.batch_size: {config.train.batch_size} > the {len(train_docs)} training documents of data.corpus "
      f"{config.data.corpus!r} (documents with >= 2 sentences, less eval.num_queries)"
    )
  data = ict_data.IctData(
    documents, train_docs, eval_docs, tokenizer, config.data.query_len, config.data.doc_len,
    config.ict.remove_probability, config.seed,
  )  # fmt: skip
  model = IctRetriever(cfg)
  dummy = _dummy_rows(config.data.query_len, config.data.doc_len)

  def init_params(key):
    return model.init(key, *dummy)["params"]

  initial_params = None
  if config.init_from:  # both encoders from the checkpoint; the projections keep a random init
    encoder = pretrained_encoder(config, cfg.encoder)
    fresh = jax.device_get(jax.jit(init_params)(jax.random.fold_in(jax.random.key(config.seed), 0)))
    initial_params = {name: {**fresh[name], "encoder": encoder} for name in ("query_embedder", "doc_embedder")}

  def loss_fn(params, batch, key):
    query_BxD, context_BxD = model.apply(
      {"params": params},
      batch["query_ids"],
      batch["query_mask"],
      batch["context_ids"],
      batch["context_mask"],
      deterministic=False,
      rngs={"dropout": key},
    )
    loss, accuracy = ict_loss(query_BxD, context_BxD)
    return loss, {"in_batch_accuracy": accuracy}

  return train_lib.Task(
    init_params=init_params,
    loss_fn=loss_fn,
    train_data=lambda index, count: data.dataset(config.train.batch_size, index, count),
    eval_fn=make_eval_fn(model, data, config.eval.max_corpus),
    initial_params=initial_params,
  )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train_lib.TrainResult:
  validate(config)
  return train_lib.train(config, workdir, make_task(config))


def load_retriever(workdir: str, step: int | None = None) -> dict[str, Any]:
  """{'query_embedder': ..., 'doc_embedder': ...} (float32 numpy) from checkpoint `step` (default: the latest) of
  the ICT run in `workdir`, shapes checked against the run's config.json first: the warm start of REALM §3.4,
  ready to replace those two subtrees of `realm_jax.model.Realm`'s params. One-line ConfigError otherwise."""
  spec = retriever_spec(workdir, field="workdir")
  step = spec.steps[-1] if step is None else step
  if step not in spec.steps:
    raise config_lib.ConfigError(f"workdir: {spec.workdir} has no checkpoint step {step} (have {list(spec.steps)})")
  cfg = model_lib.RealmConfig(pretrained.run_model_config(Path(spec.workdir)), spec.proj_size, spec.pooling)
  expected = jax.eval_shape(lambda: IctRetriever(cfg).init(jax.random.key(0), *_dummy_rows(2, 4))["params"])
  checkpointer = checkpoint_lib.Checkpointer(spec.workdir, async_save=False)
  try:
    saved = checkpointer.state_metadata(step)
  finally:
    checkpointer.close()
  try:
    tree_lib.check_shapes(expected, saved["params"], f"{spec.workdir}/checkpoints/{step} params")
  except (tree_lib.ShapeError, KeyError, TypeError) as e:
    raise config_lib.ConfigError(f"workdir: {e} (config.json and the checkpoint disagree)") from None
  state_dir = Path(spec.workdir) / "checkpoints" / str(step) / "state"
  return checkpoint_lib.restore_float32(state_dir, {"params": expected})["params"]


if __name__ == "__main__":
  main_lib.run_main(train_and_evaluate, validate, "configs/realm/ict.py")
