"""Train a Reformer on one of the paper's tasks, on the shared training loop (`core.train`).

Kitaev, Kaiser, Levskaya 2020, arXiv 2001.04451 §5: the duplication task (Table 2), enwik8 and imagenet64 (Figure 5,
Table 5), and ListOps from the Long Range Arena (Tay et al. 2020) on which later work measured Reformer. Patent
US 10,909,461 claim 1: one call of `loss_fn` runs the claimed attention network (`reformer_jax.model`) forward and
backward through its LSH layers (`core.lsh`, steps 1-4).

  python -m reformer_jax.train --config=configs/reformer/duplication.py:cpu --workdir=/tmp/dup
  python -m reformer_jax.train --config=configs/reformer/char_lm.py:cpu --workdir=/tmp/char_lm
  python -m reformer_jax.train --config=configs/reformer/listops.py:cpu --workdir=/tmp/listops
  python -m reformer_jax.train --config=configs/reformer/char_lm.py:enwik8 --workdir=gs://bucket/enwik8 \
      --config.task.path=/data/enwik8.zip

Losses: language-model tasks (duplication, char_lm, imagenet64) predict input_ids[t] from the tokens before it,
weighted by the batch's `weights` (only the second copy of w for duplication; `reformer_jax.tasks`); `bits_per_token`
is the loss / ln 2 (bits per character on bytes, bits per dim on imagenet64). ListOps is 10-way classification.
Evaluation runs the trained parameters under each attention variant of `config.eval` (its own, full attention with
the same shared-QK parameters, LSH with other hash counts: the columns of Table 2) on fixed held-out batches with
fixed hashing keys, so numbers at different steps compare the same rows and buckets. Resumes from `--workdir`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from core import config as config_lib
from core import main as main_lib
from core import train as train_lib
from reformer_jax import listops
from reformer_jax import model as model_lib
from reformer_jax import tasks

TASKS = ("duplication", "char_lm", "listops", "imagenet64")
LM_TASKS = ("duplication", "char_lm", "imagenet64")
CORPORA = ("wikipedia_xml", "enwik8")
EVAL_KEY = 4321  # eval batch i hashes with fold_in(key(EVAL_KEY), i): the same buckets at every evaluation


def model_config(config: ml_collections.ConfigDict) -> model_lib.ReformerConfig:
  """The `model` section as a ReformerConfig (config files write 0 / () for "unset": n_buckets 0 = trax's default,
  axial_pos_shape () = a learned table of max_len positions); one-line ConfigError when it is invalid."""
  fields = dict(config.model)
  if fields.get("n_buckets") == 0:
    fields["n_buckets"] = None
  for name in ("axial_pos_shape", "axial_pos_dims"):
    if fields.get(name) == ():
      fields[name] = None
  try:
    return model_lib.ReformerConfig(**fields).validate()
  except (TypeError, ValueError) as e:
    raise config_lib.ConfigError(f"model: {' '.join(str(e).split())}") from None


def variant(base: model_lib.ReformerConfig, name: str) -> model_lib.ReformerConfig:
  """The same parameters under another attention: 'full' (shared-QK layers attend to everything, local layers become
  full) or 'lsh<n>' (shared-QK layers hash with n rounds)."""
  if name == "full":
    swap = {"lsh": "full_shared_qk", "local": "full"}
    return dataclasses.replace(base, attention=tuple(swap.get(kind, kind) for kind in base.attention))
  n_hashes = int(name.removeprefix("lsh"))
  swap = {"full_shared_qk": "lsh"}
  return dataclasses.replace(base, attention=tuple(swap.get(kind, kind) for kind in base.attention), n_hashes=n_hashes)


def validate(config: ml_collections.ConfigDict) -> None:
  """One-line ConfigErrors before any data is read or any directory is written."""
  train_lib.validate(config)
  task = config.task
  config_lib.check_choice(config, "task.name", TASKS)
  cfg = model_config(config)
  config_lib.check_int(config, "task.seq_len", minimum=4)
  if task.seq_len > cfg.n_positions:
    raise config_lib.ConfigError(
      f"task.seq_len: {task.seq_len} exceeds the model's {cfg.n_positions} positions (model.max_len / axial_pos_shape)"
    )
  # Every field is checked whatever the task, so a typo in another task's section never waits for the day it is used.
  symbols_max = cfg.vocab_size if task.name == "duplication" else None
  config_lib.check_int(config, "task.vocab_size", minimum=2, maximum=symbols_max)
  config_lib.check_choice(config, "task.corpus", CORPORA)
  try:
    listops_spec(config)
  except ValueError as e:
    raise config_lib.ConfigError(" ".join(str(e).replace("listops.", "task.listops.", 1).split())) from None
  config_lib.check_int(config, "task.listops.train_examples", minimum=1)
  if not isinstance(config_lib.get(config, "task.path"), str):
    raise config_lib.ConfigError(f"task.path: must be a path or '', got {task.path!r}")
  if task.name == "duplication":
    config_lib.check_divisible(config, "task.seq_len", 2, "the duplication task is 0w0w")
  if task.name == "listops":
    for field, value in (("model.vocab_size", listops.VOCAB_SIZE), ("model.n_classes", listops.NUM_CLASSES)):
      if config_lib.get(config, field) != value:
        raise config_lib.ConfigError(f"{field}: must be {value} for ListOps, got {config_lib.get(config, field)!r}")
  if task.name == "char_lm" and task.corpus == "enwik8":
    config_lib.check_file(config, "task.path", "the enwik8 file or enwik8.zip (http://mattmahoney.net/dc/enwik8.zip)")
  if task.name in ("char_lm", "imagenet64") and cfg.vocab_size < 256 + tasks.BYTE_OFFSET:
    raise config_lib.ConfigError(f"model.vocab_size: {cfg.vocab_size} < 259, the byte vocabulary")
  config_lib.check_data_dir(config, "task.tfds_dir")
  config_lib.check_int(config, "task.eval_examples", minimum=1)
  for n in config_lib.get(config, "eval.n_hashes"):
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
      raise config_lib.ConfigError(f"eval.n_hashes: every entry must be an int >= 1, got {config.eval.n_hashes!r}")
  config_lib.check_bool(config, "eval.full")


def listops_spec(config: ml_collections.ConfigDict) -> listops.ListOpsSpec:
  lo = config.task.listops
  return listops.ListOpsSpec(lo.min_length, lo.max_length, lo.max_depth, lo.max_args).validate()


def _rngs(key: jax.Array) -> dict[str, jax.Array]:
  return {"hash": jax.random.fold_in(key, 0), "dropout": jax.random.fold_in(key, 1)}


def make_loss(config: ml_collections.ConfigDict, cfg: model_lib.ReformerConfig):
  """loss(params, batch, key, deterministic) -> (loss, metrics) for the task and model `cfg`."""
  if config.task.name == "listops":
    net = model_lib.ReformerClassifier(cfg)

    def classification_loss(params, batch, key, deterministic=False):
      logits_BxC = net.apply(
        {"params": params}, batch["input_ids"], batch["attention_mask"], deterministic=deterministic, rngs=_rngs(key)
      )
      weights_B = batch["weights"].astype(jnp.float32)
      total = jnp.maximum(jnp.sum(weights_B), 1.0)
      nll_B = optax.softmax_cross_entropy_with_integer_labels(logits_BxC, batch["label"])
      correct_B = (jnp.argmax(logits_BxC, -1) == batch["label"]).astype(jnp.float32)
      loss = jnp.sum(nll_B * weights_B) / total
      return loss, {"accuracy": jnp.sum(correct_B * weights_B) / total, "examples": jnp.sum(weights_B)}

    return classification_loss

  net = model_lib.ReformerLM(cfg)

  def lm_loss(params, batch, key, deterministic=False):
    ids_BxL = batch["input_ids"]
    logits_BxLxV = net.apply(
      {"params": params}, ids_BxL, batch["attention_mask"], deterministic=deterministic, rngs=_rngs(key)
    )
    # logits at t predict ids[t + 1]; weights are aligned with the targets (`reformer_jax.tasks`).
    targets_BxT, weights_BxT = ids_BxL[:, 1:], batch["weights"][:, 1:].astype(jnp.float32)
    nll_BxT = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV[:, :-1], targets_BxT)
    correct_BxT = (jnp.argmax(logits_BxLxV[:, :-1], -1) == targets_BxT).astype(jnp.float32)
    total = jnp.maximum(jnp.sum(weights_BxT), 1.0)
    loss = jnp.sum(nll_BxT * weights_BxT) / total
    metrics = {"accuracy": jnp.sum(correct_BxT * weights_BxT) / total, "bits_per_token": loss / math.log(2)}
    return loss, {**metrics, "tokens": jnp.sum(weights_BxT)}

  return lm_loss


def init_fn(config: ml_collections.ConfigDict, cfg: model_lib.ReformerConfig):
  net = model_lib.ReformerClassifier(cfg) if config.task.name == "listops" else model_lib.ReformerLM(cfg)
  ids = jnp.zeros((1, config.task.seq_len), jnp.int32)
  return lambda key: net.init({"params": key, **_rngs(key)}, ids, deterministic=True)["params"]


def dataset(config: ml_collections.ConfigDict, split: str, shard_index: int = 0, shard_count: int = 1):
  """The task's batches: 'train' (infinite, seeded, resumable) or 'validation' (the first `task.eval_examples` rows,
  one pass)."""
  task, batch_size, seed = config.task, config.train.batch_size, config.seed
  train = split == "train"
  rows = None if train else task.eval_examples
  if task.name == "duplication":
    return tasks.duplication_dataset(
      task.seq_len, task.vocab_size, batch_size, seed, shard_index, shard_count, split=split, num_rows=rows
    )
  if task.name == "char_lm":
    data = tasks.char_lm_splits(task.corpus, task.path)[split]
    return tasks.char_lm_dataset(
      data, task.seq_len, batch_size, seed, shard_index, shard_count, train=train, max_rows=rows
    )
  if task.name == "listops":
    examples = task.listops.train_examples if train else task.eval_examples
    return listops.listops_dataset(
      listops_spec(config), task.seq_len, batch_size, seed, shard_index, shard_count, split=split,
      num_examples=examples,
    )
  return tasks.imagenet64_dataset(
    batch_size, seed, shard_index, shard_count, split="train" if train else "validation",
    data_dir=task.tfds_dir or None,
  )  # validation: 50,000 images; `make_eval_fn` reads the first task.eval_examples


def eval_variants(config: ml_collections.ConfigDict) -> dict[str, model_lib.ReformerConfig]:
  """'' (the model as trained) plus 'full' and 'lsh<n>' per `config.eval`; variants identical to the trained model
  or needing hashing it does not have are dropped."""
  base = model_config(config)
  names = (["full"] if config.eval.full else []) + [f"lsh{n}" for n in config.eval.n_hashes]
  found = {"": base}
  for name in names:
    cfg = variant(base, name)
    if cfg != base and not (name.startswith("lsh") and "lsh" not in cfg.attention):
      found[name] = cfg
  return found


def make_eval_fn(config: ml_collections.ConfigDict):
  """eval(params, step) -> {'loss', 'accuracy', ..., 'accuracy@full', 'accuracy@lsh8', ...}: weighted means over the
  held-out batches, no dropout, hashing key fold_in(key(EVAL_KEY), i) for batch i."""
  n_batches = math.ceil(config.task.eval_examples / config.train.batch_size)
  held_out = dataset(config, "validation", jax.process_index(), jax.process_count())
  batches = list(itertools.islice(iter(held_out), n_batches))
  steps = {name: jax.jit(lambda p, b, k, f=make_loss(config, cfg): f(p, b, k, deterministic=True))
           for name, cfg in eval_variants(config).items()}  # fmt: skip
  count = "examples" if config.task.name == "listops" else "tokens"

  def evaluate(params, step) -> dict[str, float]:
    del step
    summary: dict[str, float] = {}
    for name, fn in steps.items():
      results = [jax.device_get(fn(params, batch, jax.random.fold_in(jax.random.key(EVAL_KEY), i)))
                 for i, batch in enumerate(batches)]  # fmt: skip
      weights = np.array([float(m[count]) for _, m in results])
      suffix = f"@{name}" if name else ""
      summary[f"loss{suffix}"] = float(np.average([float(v) for v, _ in results], weights=weights))
      for metric in results[0][1]:
        if metric != count:
          summary[f"{metric}{suffix}"] = float(np.average([float(m[metric]) for _, m in results], weights=weights))
    return summary

  return evaluate


def make_task(config: ml_collections.ConfigDict) -> train_lib.Task:
  cfg = model_config(config)
  loss = make_loss(config, cfg)

  def loss_fn(params, batch: Mapping[str, Any], key):
    return loss(params, batch, key, deterministic=False)

  return train_lib.Task(
    init_params=init_fn(config, cfg),
    loss_fn=loss_fn,
    train_data=lambda shard_index, shard_count: dataset(config, "train", shard_index, shard_count),
    eval_fn=make_eval_fn(config) if config.train.eval_every else None,
  )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train_lib.TrainResult:
  validate(config)
  try:
    task = make_task(config)
  except ValueError as e:  # data that is not here (enwik8 path, imagenet64 tfds): one line, before any training
    raise config_lib.ConfigError(" ".join(str(e).split())) from None
  return train_lib.train(config, workdir, task)


if __name__ == "__main__":
  main_lib.run_main(train_and_evaluate, validate, "configs/reformer/duplication.py")
