"""ELECTRA finetuning: the pretrained discriminator encoder + a task head, trained on one task, scored on dev.

Patent US 2021/0089724 (ELECTRA), final step: "after pretraining the generator is discarded and the encoder is
finetuned (classification, QA with start/end vectors, NER, ...)". Paper §3.1 and Appendix A (Table 7): Adam with
learning rate 3e-4 / 1e-4 / 5e-5 (Small / Base / Large), batch 32, 10% linear warmup then linear decay, 3 epochs
(10 for RTE and STS-B), weight decay 0 on GLUE, layer-wise learning-rate decay 0.8 (0.9 for Large); reported GLUE
numbers are the median over 10 finetuning runs. The optimizer is the pretraining one (reference
`AdamWeightDecayOptimizer`: Adam without bias correction, `electra_jax.optim`) unless `optimizer.bias_correction`.

Layer-wise LR decay (Appendix A; reference `model/optimization.py:_get_layer_lrs`): with n encoder layers, depth 0
= embeddings (+ embeddings_project), depth i+1 = layer_i, and the task head on top, parameter lr = lr·d^(top−depth).
As intended (maintainer, google-research/electra #51) the head is depth n+1 (top = n+1): head ×1, last layer ×d,
..., embeddings ×d^(n+1). The reference code puts the head at depth n+2 (a leftover of the removed pooler), so its
last layer gets ×d² and embeddings ×d^(n+2); `finetune.layerwise_lr_decay_reference_bug=True` reproduces that.

  python -m electra_jax.finetune --config=configs/electra/glue.py:sst2 --config.init_checkpoint=DIR --workdir=W

`finetune.seeds` runs seeds config.seed, config.seed + 1, ... into W/seed_<s> (each resumable) and writes
W/results.json: per-seed metrics, median / mean / std of the scores. `run_task(config, workdir)` is the Python API.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from core import bert as bert_lib
from core import config as config_lib
from core import train as train_lib
from electra_jax import evaluate, handoff, heads, tasks
from electra_jax import features as features_lib
from electra_jax import optim as electra_optim

_LAYER = re.compile(r"^layer_(\d+)$")


def layerwise_lr_multipliers(params: Any, num_layers: int, decay: float, reference_bug: bool = False) -> Any:
  """Tree of d^(top − depth) shaped like `params` ({'encoder': ..., 'head': ...}); see the module docstring.

  depth: encoder/embeddings*, 0; encoder/layer_i, i + 1; the head (and anything outside 'encoder'), top.
  top = n + 1 (intended) or n + 2 (reference code, issue #51 / #64).
  """
  top = num_layers + (2 if reference_bug else 1)

  def multiplier(path, leaf) -> float:
    del leaf
    names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
    depth = top
    if names and names[0] == "encoder" and len(names) > 1:
      match = _LAYER.match(names[1])
      if names[1].startswith("embeddings"):
        depth = 0
      elif match:
        depth = int(match.group(1)) + 1
    return float(decay ** (top - depth))

  return jax.tree_util.tree_map_with_path(multiplier, params)


def model_config(config: ml_collections.ConfigDict) -> bert_lib.BertConfig:
  return bert_lib.from_model_section(config.model)


def resolve_checkpoint(path: str) -> str:
  if path == "minilm":
    from core.data import corpora  # pylint: disable=g-import-not-at-top

    return str(corpora.minilm_dir())
  return os.path.expanduser(path)


def validate(config: ml_collections.ConfigDict) -> None:
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
  for field in ("task.data_dir", "task.tfds_dir"):
    value = config_lib.get(config, field)
    if value and not os.path.isdir(os.path.expanduser(value)):
      raise config_lib.ConfigError(f"{field}: not a directory: {value!r}")
  config_lib.check_positive(config, "finetune.epochs")
  config_lib.check_int(config, "finetune.seeds", minimum=1)
  config_lib.check_range(config, "finetune.warmup_fraction", 0.0, 1.0, inclusive=True)
  _check_interval(config, "finetune.layerwise_lr_decay", "(0, 1]", lambda v: 0.0 < v <= 1.0)
  _check_interval(config, "finetune.head_dropout_rate", "[0, 1)", lambda v: 0.0 <= v < 1.0)
  config_lib.check_int(config, "finetune.eval_batch_size", minimum=1)
  path = config.init_checkpoint
  if path and path != "minilm":
    p = resolve_checkpoint(path)
    if not (handoff.is_pretraining_workdir(p) or handoff.is_hf_dir(p)):
      what = (
        "does not exist"
        if not os.path.exists(p)
        else "holds neither checkpoints/<step>/state nor config.json + *.safetensors"
      )
      raise config_lib.ConfigError(
        f"init_checkpoint: {path!r} {what} (allowed: a pretraining workdir, a HuggingFace dir, 'minilm' or '')"
      )


def _check_interval(config, field: str, interval: str, ok) -> None:
  value = config_lib.get(config, field)
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
    raise config_lib.ConfigError(f"{field}: must be in {interval}, got {value!r}")


@dataclasses.dataclass
class Prepared:
  """Everything a seed's run shares: data, features, model, pretrained encoder, step counts."""

  spec: tasks.TaskSpec
  data: tasks.TaskData
  train_features: features_lib.Features
  dev_features: features_lib.Features
  model: heads.FinetuneModel
  encoder_config: bert_lib.BertConfig
  encoder_params: Any
  total_steps: int
  warmup_steps: int
  predict: Any = None  # jitted dev forward, shared by the seeds (one compile)


def _tokenizer(config: ml_collections.ConfigDict, checkpoint: str):
  from core.data import corpora, tokenizers  # pylint: disable=g-import-not-at-top

  vocab = config.task.vocab_path
  if not vocab and checkpoint and os.path.isfile(os.path.join(checkpoint, "vocab.txt")):
    vocab = os.path.join(checkpoint, "vocab.txt")
  return tokenizers.WordPieceTokenizer(vocab or corpora.bert_vocab_path())


def featurize(spec: tasks.TaskSpec, examples, tokenizer, config: ml_collections.ConfigDict, training: bool):
  t = config.task
  if spec.task_type in ("classification", "regression"):
    return features_lib.text_features(examples, tokenizer, t.max_seq_length, spec.task_type == "regression")
  if spec.task_type == "span_qa":
    return features_lib.qa_features(examples, tokenizer, t.max_seq_length, t.max_query_length, training=training)
  return features_lib.tagging_features(examples, tokenizer, t.max_seq_length, t.label_tokens)


def prepare(config: ml_collections.ConfigDict, workdir: str) -> Prepared:
  """Loads the task and the pretrained encoder, featurizes, and derives total / warmup steps from the data size."""
  checkpoint = resolve_checkpoint(config.init_checkpoint) if config.init_checkpoint else ""
  base = model_config(config)
  try:
    heads_by_width = {base.hidden_size: base.num_heads}  # else config.json, else ELECTRA's 64-wide heads
    loaded, encoder_params = handoff.load_pretrained_encoder(
      checkpoint, heads_for_hidden=heads_by_width, step=config.init_checkpoint_step or None
    )
  except handoff.HandoffError as e:
    raise config_lib.ConfigError(f"init_checkpoint: {e}") from None
  encoder_config = base
  if loaded is not None:
    encoder_config = loaded.replace(
      hidden_dropout_rate=base.hidden_dropout_rate, attention_dropout_rate=base.attention_dropout_rate, dtype=base.dtype
    )
  if config.task.max_seq_length > encoder_config.max_position_embeddings:
    raise config_lib.ConfigError(
      f"task.max_seq_length: {config.task.max_seq_length} exceeds the encoder's "
      f"{encoder_config.max_position_embeddings} positions"
    )
  try:
    data = tasks.load_task(
      config.task.name,
      seed=config.task.split_seed,
      data_dir=os.path.expanduser(config.task.data_dir),
      tfds_dir=os.path.expanduser(config.task.tfds_dir),
      cache_dir=os.path.join(workdir, "data"),
      train_size=config.task.train_size,
      dev_size=config.task.dev_size,
    )
  except (ValueError, FileNotFoundError, RuntimeError) as e:
    hint = ""
    if config.task.name in (*tasks.GLUE_NAMES, "squad") and not config.task.data_dir:
      hint = "; or set task.data_dir to a directory of GLUE TSVs / SQuAD v1.1 JSON"
    raise config_lib.ConfigError(f"task.name={config.task.name}: {str(e).splitlines()[0]}{hint}") from None
  spec = data.spec
  train_examples = list(data.train)
  if config.finetune.double_unordered and spec.task_type in ("classification", "regression"):
    train_examples += [tasks.TextExample(ex.texts[::-1], ex.label) for ex in data.train if len(ex.texts) == 2]
  tokenizer = _tokenizer(config, checkpoint)
  if tokenizer.vocab_size > encoder_config.vocab_size:
    raise config_lib.ConfigError(
      f"task.vocab_path: tokenizer has {tokenizer.vocab_size} entries, the encoder only {encoder_config.vocab_size}"
    )
  train_features = featurize(spec, train_examples, tokenizer, config, training=True)
  dev_features = featurize(spec, data.dev, tokenizer, config, training=False)
  if not len(train_features):
    raise config_lib.ConfigError(f"task.name={spec.name}: no training example fits task.max_seq_length")
  model = heads.FinetuneModel(encoder_config, spec.task_type, spec.num_labels, config.finetune.head_dropout_rate)
  total = max(1, math.ceil(config.finetune.epochs * len(train_features) / config.train.batch_size))
  warmup = round(config.finetune.warmup_fraction * total)
  predict = evaluate.make_predict_fn(model, config.task.max_answer_length)
  return Prepared(
    spec, data, train_features, dev_features, model, encoder_config, encoder_params, total, warmup, predict
  )


def make_task(config: ml_collections.ConfigDict, prep: Prepared, seed: int) -> train_lib.Task:
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

  decay = config.finetune.layerwise_lr_decay
  multipliers = None
  if decay < 1.0:
    n_layers, bug = prep.encoder_config.num_layers, config.finetune.layerwise_lr_decay_reference_bug
    multipliers = lambda params: layerwise_lr_multipliers(params, n_layers, decay, bug)
  opt = config.optimizer
  scale_by = None
  if not opt.get("bias_correction", True):
    scale_by = electra_optim.scale_by_adam_no_bias_correction(opt.b1, opt.b2, opt.eps)
  pretrained = None if prep.encoder_params is None else {"encoder": prep.encoder_params}
  return train_lib.Task(init_params=init_params, loss_fn=loss_fn, train_data=train_data, eval_fn=eval_fn,
                        lr_multipliers=multipliers, scale_by=scale_by, initial_params=pretrained)  # fmt: skip


def seed_config(config: ml_collections.ConfigDict, prep: Prepared, seed: int) -> ml_collections.ConfigDict:
  run = ml_collections.ConfigDict(config.to_dict())
  run.seed = seed
  run.train.total_steps = prep.total_steps
  run.optimizer.warmup_steps = prep.warmup_steps
  run.train.checkpoint_every = min(run.train.checkpoint_every, prep.total_steps)
  return run


def run_seed(config: ml_collections.ConfigDict, prep: Prepared, seed: int, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) one seed into `workdir`, scores dev, writes `workdir/result.json`."""
  result_path = os.path.join(workdir, "result.json")
  if os.path.isfile(result_path):
    with open(result_path) as f:
      saved = json.load(f)
    if saved.get("total_steps") == prep.total_steps and saved.get("seed") == seed:
      return saved
  run = seed_config(config, prep, seed)
  task = make_task(run, prep, seed)
  result = train_lib.train(run, workdir, task)
  dev = task.eval_fn(result.state.params, prep.total_steps)
  out = {"seed": seed, "total_steps": prep.total_steps, **dev}
  _write_json(result_path, out)
  return out


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


def run_task(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Finetunes `finetune.seeds` seeds of `task.name` from `init_checkpoint`; returns (and writes) results.json."""
  validate(config)
  config_lib.check_workdir(workdir)
  prep = prepare(config, workdir)
  _write_json(os.path.join(workdir, "config.json"), config.to_dict())
  per_seed = []
  for i in range(config.finetune.seeds):
    seed = config.seed + i
    per_seed.append(run_seed(config, prep, seed, os.path.join(workdir, f"seed_{seed}")))
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
    "seeds": per_seed,
    "scores": scores,
    **summarize(scores),
  }
  _write_json(os.path.join(workdir, "results.json"), results)
  return results


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  results = run_task(config, workdir)
  print(
    f"{results['task']}: {results['metric']} median {results['median']:.2f} mean {results['mean']:.2f} "
    f"std {results['std']:.2f} over {len(results['scores'])} seeds -> {os.path.join(workdir, 'results.json')}"
  )
  return results


if __name__ == "__main__":
  config_lib.run_main(train_and_evaluate, validate, "configs/electra/glue.py")
