"""`make demo` for LoRA: two adapters on one frozen MiniLM, trained per task, then served in one mixed batch.

Hu et al. 2021 (arXiv 2106.09685) §4.2: one shared base, a small (A, B) per task, switched at deployment. Trains LoRA
(r = 8 on query/value + the task head; `configs/lora/cpu.py`) on two generated tasks with the bundled MiniLM-L6 —
`negation` (sentiment whose polarity a negator flips) and `word_order` (CoLA-style acceptability) — through the
entry point's code (`lora_jax.finetune.run_task`), then loads both adapter exports onto one base (`lora_jax.Registry`)
and runs a dev batch whose rows alternate between the tasks in one jitted call (`lora_jax.apply_mixed`): each row's
encoder output goes through its task's head. Prints each task's dev score, the adapter size against the base, and
the mixed batch's agreement with one-adapter-at-a-time runs.

  python -m lora_jax.demo --workdir=workdirs/lora_demo [--train_size 1000] [--epochs 2]
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

import lora_jax
from core import bert as bert_lib
from core import pretrained
from core.config import load_config_file
from core.finetune import heads, runner
from core.main import run_app
from lora_jax import checkpoint, finetune
from lora_jax.registry import Registry

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("workdir", "workdirs/lora_demo", "Where the two finetuning runs go (resumed).")
flags.DEFINE_string("tasks", "negation,word_order", "Two (or more) binary classification tasks, one adapter each.")
flags.DEFINE_integer("train_size", 1000, "Training examples per task.")
flags.DEFINE_float("epochs", 2.0, "Epochs per task.")
flags.DEFINE_integer("rows", 32, "Rows of the mixed serving batch.")
flags.DEFINE_bool("tiny", False, "A tiny random-init encoder instead of MiniLM (the end-to-end test's setting).")
FLAGS = flags.FLAGS


def _encoder_spec(spec: lora_jax.LoraSpec) -> lora_jax.LoraSpec:
  """The spec over the encoder's own paths ('layer_0/...'): the registry serves `BertEncoder`, heads apply after."""
  targets = [t.removeprefix("encoder/") if isinstance(t, str) else (t[0].removeprefix("encoder/"), *t[1:])
             for t in spec.targets]  # fmt: skip
  return lora_jax.LoraSpec(targets, rank=spec.rank, alpha=spec.alpha, rslora=spec.rslora)


def adapters_base(prep: runner.Prepared, config) -> dict:
  """The frozen random-init encoder of a run without init_checkpoint (what `core.train` rebuilt from the seed)."""
  from core import train as train_lib  # pylint: disable=g-import-not-at-top

  task = runner.make_task(runner.seed_config(config, prep, config.seed), prep, config.seed, finetune.RECIPE)
  return jax.jit(train_lib.init_frozen(task, config.seed))(task.initial_params)["encoder"]


def main(_) -> None:
  tasks = FLAGS.tasks.split(",")
  adapters, dev, prep = {}, {}, None
  print(f"LoRA on query/value of the bundled MiniLM-L6, one adapter per task ({FLAGS.train_size} examples, "
        f"{FLAGS.epochs:g} epochs):")  # fmt: skip
  for task in tasks:
    config = load_config_file(os.path.join(_REPO, "configs/lora/cpu.py"), f"task={task},seeds=1,epochs={FLAGS.epochs}")
    config.task.train_size, config.task.dev_size, config.train.progress = FLAGS.train_size, 0, False
    if FLAGS.tiny:
      config.init_checkpoint, config.task.max_seq_length, config.task.dev_size = "", 16, FLAGS.rows
      config.model.update(hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, max_position_embeddings=32)
    finetune.validate(config)
    workdir = os.path.join(FLAGS.workdir, task)
    results = finetune.run_task(config, workdir)
    lora, spec, extra, meta = checkpoint.load(finetune.latest_adapter(os.path.join(workdir, f"seed_{config.seed}")))
    adapters[task] = (lora, extra["head"])
    prep = runner.prepare(config, os.path.join(FLAGS.workdir, task), finetune.RECIPE)
    dev[task] = prep.dev_features
    print(f"  {task:12s} dev {results['metric']} {results['median']:.1f}; adapter + head {meta['bytes'] / 1e6:.2f} MB, "
          f"{results['parameters']['trainable_fraction']:.2%} of {results['parameters']['total'] / 1e6:.1f}M params")

  # One base, one registry; each row of the batch names its task's adapter.
  if config.init_checkpoint:
    _, base = pretrained.load_encoder(runner.init_path(config))
  else:  # random init: the encoder every run started from (frozen, so still the same)
    base = adapters_base(prep, config)
  encoder = bert_lib.BertEncoder(prep.encoder_config)
  registry = Registry(encoder, base, _encoder_spec(spec))
  for task, (lora, _) in adapters.items():
    registry.add(task, lora["encoder"])
  per_task = FLAGS.rows // len(tasks)
  rows = [(task, i) for i in range(per_task) for task in tasks]  # interleaved: task0, task1, task0, ...
  batch = {k: np.stack([dev[t].inputs[k][i] for t, i in rows]) for k in ("input_ids", "token_type_ids", "attention_mask")}
  args = (batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
  hidden = registry.mixed([t for t, _ in rows], *args)
  head = heads.ClassificationHead(prep.encoder_config, 2, 0.0)
  logits = jnp.stack([head.apply({"params": adapters[t][1]}, hidden[b:b + 1])[0] for b, (t, _) in enumerate(rows)])

  # The same rows one adapter at a time (what a server without mixed batches does).
  diffs, correct = [], {t: 0 for t in tasks}
  for task in tasks:
    index = [b for b, (t, _) in enumerate(rows) if t == task]
    alone = registry(task, *(x[np.asarray(index)] for x in args))
    diffs.append(float(jnp.abs(alone - hidden[np.asarray(index)]).max()))
    predicted = np.asarray(jnp.argmax(logits[np.asarray(index)], -1))
    correct[task] = int((predicted == np.asarray([dev[task].labels[i] for t, i in rows if t == task])).sum())
  print(f"\nOne mixed batch of {len(rows)} dev rows ({', '.join(tasks)} interleaved), one jitted call:")
  for task in tasks:
    print(f"  {task:12s} {correct[task]}/{per_task} rows correct")
  print(f"  max |mixed - one adapter at a time| over encoder outputs: {max(diffs):.2e}")


if __name__ == "__main__":
  run_app(main)
