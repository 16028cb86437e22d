"""The multi-seed finetuning run: a pretrained encoder + a fresh task head, trained per seed, scored on dev.

BERT §4 and ELECTRA §3.1 / Appendix A: initialise the encoder from pretraining (`core.pretrained.load_encoder`), add
a task head, train for a few epochs (total steps = ceil(epochs x train examples / batch), warmup a fraction of
them), report the median over finetuning seeds (ELECTRA: 10 for GLUE). `run_task(config, workdir, recipe)` runs
seeds config.seed, config.seed + 1, ... into WORKDIR/seed_<s> (each resumable, on `core.train`) and writes
WORKDIR/results.json: per-seed metrics and median / mean / std of the scores.

What a method changes comes in a `Recipe` (ELECTRA: Adam without bias correction and layer-wise LR decay; LoRA:
a frozen encoder with adapters), so the runner holds no method's knobs. Config sections it reads: `model` (the
shape of a random-init encoder), `init_checkpoint` ('' = random init, 'minilm', or any path `core.pretrained`
accepts) with `init_checkpoint_step` (0 = latest), `task`, `finetune` (epochs, seeds, warmup_fraction,
head_dropout_rate, classifier = the head's shape 'mlp' | 'linear', eval_batch_size, double_unordered) and the loop's
`train` / `optimizer` / `mesh`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from core import bert as bert_lib
from core import config as config_lib
from core import pretrained
from core import train as train_lib
from core.finetune import evaluate, heads, tasks
from core.finetune import features as features_lib
from core.finetune.examples import TaskData, TaskSpec, TextExample


@dataclasses.dataclass(frozen=True)
class Recipe:
  """A method's part of a finetuning run; every hook is optional.

  validate(config): checks of the method's own fields, after the shared ones.
  scale_by(config) -> optax transformation or None: replaces Adam's scaling in `core.optim` (e.g. no bias correction).
  lr_multipliers(config, encoder_config) -> (params -> tree of per-leaf LR factors) or None.
  adapt_task(task, config, prepared) -> Task: the last word on the `core.train.Task` (e.g. freeze the encoder).
  wrap_model(model, config) -> an object with the Linen `init` / `apply` signatures and the model's attributes: what
    the loss, the init and the dev predictions call instead of the plain `heads.FinetuneModel` (e.g. the model with
    LoRA adapters applied by method interception).
  """

  validate: Callable[[ml_collections.ConfigDict], None] | None = None
  scale_by: Callable[[ml_collections.ConfigDict], optax.GradientTransformation | None] | None = None
  lr_multipliers: Callable[[ml_collections.ConfigDict, bert_lib.BertConfig], Callable[[Any], Any] | None] | None = None
  adapt_task: Callable[[train_lib.Task, ml_collections.ConfigDict, Prepared], train_lib.Task] | None = None
  wrap_model: Callable[[heads.FinetuneModel, ml_collections.ConfigDict], Any] | None = None


def model_config(config: ml_collections.ConfigDict) -> bert_lib.BertConfig:
  return bert_lib.from_model_section(config.model)


def init_path(config: ml_collections.ConfigDict) -> str:
  """`init_checkpoint` as a path ('' = random init; 'minilm' = the bundled MiniLM-L6 directory)."""
  if config.init_checkpoint == "minilm":
    from core.data import corpora  # pylint: disable=g-import-not-at-top

    return str(corpora.minilm_dir())
  return os.path.expanduser(config.init_checkpoint)


def init_step(config: ml_collections.ConfigDict) -> int | None:
  return config.init_checkpoint_step or None


def validate(config: ml_collections.ConfigDict, recipe: Recipe = Recipe()) -> None:
  """One-line ConfigErrors before any data is read or any directory is written."""
  train_lib.validate(config)
  try:
    model_config(config).validate()
  except (TypeError, ValueError) as e:
    raise config_lib.ConfigError(f"model: {e}") from None
  config_lib.check_choice(config, "task.name", tasks.TASKS)
  config_lib.check_int(config, "task.max_seq_length", minimum=8)
  config_lib.check_int(config, "task.max_query_length", minimum=1)
  config_lib.check_int(config, "task.max_answer_length", minimum=1)
  config_lib.check_choice(config, "task.label_tokens", features_lib.LABEL_TOKENS)
  config_lib.check_int(config, "task.split_seed", minimum=0)
  config_lib.check_int(config, "task.train_size", minimum=0)
  config_lib.check_int(config, "task.dev_size", minimum=0)
  config_lib.check_dir(config, "task.data_dir")
  config_lib.check_data_dir(config, "task.tfds_dir")  # may be gs://
  if config.task.vocab_path:
    config_lib.check_file(config, "task.vocab_path", "a BERT WordPiece vocab.txt")
  config_lib.check_positive(config, "finetune.epochs")
  config_lib.check_int(config, "finetune.seeds", minimum=1)
  config_lib.check_range(config, "finetune.warmup_fraction", 0.0, 1.0, inclusive=True)
  config_lib.check_interval(config, "finetune.head_dropout_rate", "[0, 1)")
  config_lib.check_choice(config, "finetune.classifier", heads.CLASSIFIERS)
  config_lib.check_int(config, "finetune.eval_batch_size", minimum=1)
  config_lib.check_bool(config, "finetune.double_unordered")
  config_lib.check_int(config, "init_checkpoint_step", minimum=0)
  if config.init_checkpoint:
    try:
      pretrained.resolve(init_path(config), step=init_step(config))
    except config_lib.ConfigError as e:
      raise config_lib.ConfigError(f"init_checkpoint: {e} ('' = random init, or 'minilm')") from None
  if recipe.validate is not None:
    recipe.validate(config)


@dataclasses.dataclass
class Prepared:
  """Everything a seed's run shares: data, features, model, pretrained encoder, step counts."""

  spec: TaskSpec
  data: TaskData
  train_features: features_lib.Features
  dev_features: features_lib.Features
  model: heads.FinetuneModel
  encoder_config: bert_lib.BertConfig
  encoder_params: Any
  total_steps: int
  warmup_steps: int
  predict: Any = None  # jitted dev forward, shared by the seeds (one compile)


def _tokenizer(config: ml_collections.ConfigDict, init_dir: str):
  """task.vocab_path (WordPiece), else the init directory's vocab.txt (WordPiece), else its byte-level BPE files
  (tokenizer.json or vocab.json + merges.txt: RoBERTa), else the bundled uncased BERT vocabulary."""
  from core.data import corpora, tokenizers  # pylint: disable=g-import-not-at-top

  vocab = config.task.vocab_path
  if not vocab and init_dir and os.path.isfile(os.path.join(init_dir, "vocab.txt")):
    vocab = os.path.join(init_dir, "vocab.txt")
  if not vocab and init_dir and tokenizers.has_byte_level_bpe(init_dir):
    try:
      return tokenizers.ByteLevelBpeTokenizer.from_dir(init_dir)
    except (ValueError, OSError) as e:
      raise config_lib.ConfigError(f"init_checkpoint: {init_dir}: tokenizer not loadable: {e}") from None
  return tokenizers.WordPieceTokenizer(vocab or corpora.bert_vocab_path())


def featurize(spec: TaskSpec, examples, tokenizer, config: ml_collections.ConfigDict, training: bool):
  t = config.task
  if spec.task_type in ("classification", "regression"):
    return features_lib.text_features(examples, tokenizer, t.max_seq_length, spec.task_type == "regression")
  if spec.task_type == "span_qa":
    return features_lib.qa_features(examples, tokenizer, t.max_seq_length, t.max_query_length, training=training)
  return features_lib.tagging_features(examples, tokenizer, t.max_seq_length, t.label_tokens)


def load_data(config: ml_collections.ConfigDict, workdir: str) -> TaskData:
  """The task's (train, dev) examples; loader failures become one-line ConfigErrors naming the task."""
  try:
    return tasks.load_task(
      config.task.name,
      seed=config.task.split_seed,
      data_dir=os.path.expanduser(config.task.data_dir),
      tfds_dir=config.task.tfds_dir if "://" in config.task.tfds_dir else os.path.expanduser(config.task.tfds_dir),
      cache_dir=os.path.join(workdir, "data"),
      train_size=config.task.train_size,
      dev_size=config.task.dev_size,
    )
  except (ValueError, FileNotFoundError, RuntimeError) as e:
    hint = ""
    if config.task.name in (*tasks.GLUE_NAMES, "squad") and not config.task.data_dir:
      hint = "; or set task.data_dir to a directory of GLUE TSVs / SQuAD v1.1 JSON"
    raise config_lib.ConfigError(f"task.name={config.task.name}: {str(e).splitlines()[0]}{hint}") from None


def prepare(config: ml_collections.ConfigDict, workdir: str, recipe: Recipe = Recipe()) -> Prepared:
  """Loads the task and the pretrained encoder, featurizes, and derives total / warmup steps from the data size."""
  base = model_config(config)
  encoder_config, encoder_params, init_dir = base, None, ""
  if config.init_checkpoint:
    path = init_path(config)
    kind, where = pretrained.resolve(path, step=init_step(config))
    init_dir = str(where) if kind == "bert" else ""
    try:
      loaded, encoder_params = pretrained.load_encoder(path, step=init_step(config))
    except config_lib.ConfigError as e:
      raise config_lib.ConfigError(f"init_checkpoint: {e}") from None
    encoder_config = loaded.replace(
      hidden_dropout_rate=base.hidden_dropout_rate, attention_dropout_rate=base.attention_dropout_rate, dtype=base.dtype
    )
  if config.task.max_seq_length > encoder_config.max_position_embeddings:
    raise config_lib.ConfigError(
      f"task.max_seq_length: {config.task.max_seq_length} exceeds the encoder's "
      f"{encoder_config.max_position_embeddings} positions"
    )
  data = load_data(config, workdir)
  spec = data.spec
  train_examples = list(data.train)
  if config.finetune.double_unordered and spec.task_type in ("classification", "regression"):
    train_examples += [TextExample(ex.texts[::-1], ex.label) for ex in data.train if len(ex.texts) == 2]
  tokenizer = _tokenizer(config, init_dir)
  if tokenizer.vocab_size > encoder_config.vocab_size:
    raise config_lib.ConfigError(
      f"task.vocab_path: tokenizer has {tokenizer.vocab_size} entries, the encoder only {encoder_config.vocab_size}"
    )
  train_features = featurize(spec, train_examples, tokenizer, config, training=True)
  dev_features = featurize(spec, data.dev, tokenizer, config, training=False)
  if not len(train_features):
    raise config_lib.ConfigError(f"task.name={spec.name}: no training example fits task.max_seq_length")
  model = heads.FinetuneModel(
    encoder_config, spec.task_type, spec.num_labels, config.finetune.head_dropout_rate, config.finetune.classifier
  )
  if recipe.wrap_model is not None:
    model = recipe.wrap_model(model, config)
  total = max(1, math.ceil(config.finetune.epochs * len(train_features) / config.train.batch_size))
  warmup = round(config.finetune.warmup_fraction * total)
  predict = evaluate.make_predict_fn(model, config.task.max_answer_length)
  return Prepared(
    spec, data, train_features, dev_features, model, encoder_config, encoder_params, total, warmup, predict
  )


def make_task(
  config: ml_collections.ConfigDict, prep: Prepared, seed: int, recipe: Recipe = Recipe()
) -> train_lib.Task:
  """core.train.Task: init (pretrained encoder + fresh head), per-type loss, grain batches, dev evaluation."""
  from core.data import pipeline  # pylint: disable=g-import-not-at-top

  model, task_type, feats = prep.model, prep.spec.task_type, prep.train_features
  input_keys = list(evaluate.INPUT_KEYS)

  def init_params(key):
    dummy = jnp.zeros((1, 8), jnp.int32)
    return model.init(key, dummy, dummy, jnp.ones_like(dummy))["params"]

  def loss_fn(params, batch, key):
    out = model.apply(
      {"params": params},
      batch["input_ids"],
      batch["token_type_ids"],
      batch["attention_mask"],
      deterministic=False,
      rngs={"dropout": key},
    )
    if task_type == "classification":
      return heads.classification_loss(out, batch["label"])
    if task_type == "regression":
      return heads.regression_loss(out, batch["label"])
    if task_type == "span_qa":
      return heads.span_loss(out[0], out[1], batch["label"][:, 0], batch["label"][:, 1], batch["attention_mask"])
    return heads.tagging_loss(out, batch["label"])

  def train_data(shard_index, shard_count):
    dataset = pipeline.classification_dataset(
      {k: feats.inputs[k] for k in input_keys}, feats.labels, config.train.batch_size, seed=seed,
      num_epochs=None, drop_remainder=True,
    )  # fmt: skip
    return pipeline.take_host_rows(dataset, shard_index, shard_count)

  def eval_fn(params, step):
    del step
    predictions = evaluate.predict_all(prep.predict, params, prep.dev_features, config.finetune.eval_batch_size)
    return evaluate.score(prep.spec, prep.data.dev, prep.dev_features, predictions)

  task = train_lib.Task(
    init_params=init_params,
    loss_fn=loss_fn,
    train_data=train_data,
    eval_fn=eval_fn,
    lr_multipliers=recipe.lr_multipliers(config, prep.encoder_config) if recipe.lr_multipliers else None,
    scale_by=recipe.scale_by(config) if recipe.scale_by else None,
    initial_params=None if prep.encoder_params is None else {"encoder": prep.encoder_params},
  )
  return recipe.adapt_task(task, config, prep) if recipe.adapt_task else task


def seed_config(config: ml_collections.ConfigDict, prep: Prepared, seed: int) -> ml_collections.ConfigDict:
  """The seed's run config: its seed and step counts, and `model` = the encoder actually trained (what a later
  `core.pretrained.load_encoder` of this seed's workdir reads)."""
  run = ml_collections.ConfigDict(config.to_dict())
  run.seed = seed
  run.model = ml_collections.ConfigDict(
    {**dataclasses.asdict(prep.encoder_config), "embedding_size": prep.encoder_config.embedding_size or 0}
  )
  run.train.total_steps = prep.total_steps
  run.optimizer.warmup_steps = prep.warmup_steps
  run.train.checkpoint_every = min(run.train.checkpoint_every, prep.total_steps)
  return run


def run_seed(
  config: ml_collections.ConfigDict, prep: Prepared, seed: int, workdir: str, recipe: Recipe = Recipe()
) -> dict[str, Any]:
  """Trains (or resumes) one seed into `workdir`, scores dev, writes `workdir/result.json`."""
  result_path = os.path.join(workdir, "result.json")
  if os.path.isfile(result_path):
    with open(result_path) as f:
      saved = json.load(f)
    if saved.get("total_steps") == prep.total_steps and saved.get("seed") == seed:
      return saved
  run = seed_config(config, prep, seed)
  task = make_task(run, prep, seed, recipe)
  result = train_lib.train(run, workdir, task)
  dev = task.eval_fn(result.params, prep.total_steps)
  out = {"seed": seed, "total_steps": prep.total_steps, **dev}
  _write_json(result_path, out)
  return out


def parameter_counts(task: train_lib.Task) -> dict[str, int | float]:
  """All vs trainable parameters of a run (`Task.trainable`), from shapes alone (nothing is initialised), and the
  trainable ones per top-level group ('head', 'lora', 'encoder'): the LoRA paper's Table 2 counts the adapters alone."""
  params = jax.eval_shape(task.init_params, jax.random.key(0))
  size = lambda tree: sum(int(x.size) for x in jax.tree.leaves(tree))  # noqa: E731
  trainable_tree = task.split(params)[0]
  total, trainable = size(params), size(trainable_tree)
  by_group = {name: size(subtree) for name, subtree in trainable_tree.items()}
  return {
    "total": total, "trainable": trainable, "trainable_fraction": trainable / total, "trainable_by_group": by_group
  }  # fmt: skip


def _write_json(path: str, payload: dict[str, Any]) -> None:
  if jax.process_index() != 0:  # every process computes the same numbers; one writes them
    return
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def summarize(scores: list[float]) -> dict[str, float]:
  """median (the paper's statistic), mean and population std of per-seed scores."""
  values = np.asarray(scores, np.float64)
  return {"median": float(np.median(values)), "mean": float(values.mean()), "std": float(values.std())}


def run_task(config: ml_collections.ConfigDict, workdir: str, recipe: Recipe = Recipe()) -> dict[str, Any]:
  """Finetunes `finetune.seeds` seeds of `task.name` from `init_checkpoint`; returns (and writes) results.json."""
  validate(config, recipe)
  config_lib.check_workdir(workdir)
  prep = prepare(config, workdir, recipe)
  _write_json(os.path.join(workdir, "config.json"), config.to_dict())
  per_seed = []
  for i in range(config.finetune.seeds):
    seed = config.seed + i
    per_seed.append(run_seed(config, prep, seed, os.path.join(workdir, f"seed_{seed}"), recipe))
  scores = [r["score"] for r in per_seed]
  results = {
    "task": prep.spec.name,
    "task_type": prep.spec.task_type,
    "metric": prep.spec.metric,
    "init_checkpoint": config.init_checkpoint,
    "encoder": {k: getattr(prep.encoder_config, k) for k in ("hidden_size", "num_layers", "num_heads")},
    "train_examples": len(prep.train_features),
    "dev_examples": len(prep.data.dev),
    "total_steps": prep.total_steps,
    "parameters": parameter_counts(make_task(config, prep, config.seed, recipe)),
    "seeds": per_seed,
    "scores": scores,
    **summarize(scores),
  }
  _write_json(os.path.join(workdir, "results.json"), results)
  return results


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, recipe: Recipe = Recipe()) -> dict[str, Any]:
  """`run_task` + a one-line summary: the body of every method's finetuning entry point."""
  results = run_task(config, workdir, recipe)
  print(
    f"{results['task']}: {results['metric']} median {results['median']:.2f} mean {results['mean']:.2f} "
    f"std {results['std']:.2f} over {len(results['scores'])} seeds -> {os.path.join(workdir, 'results.json')}"
  )
  return results
