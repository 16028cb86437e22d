"""`make demo` for ELECTRA: tiny replaced-token-detection pretraining on the bundled text, then finetuning.

Pretrains `configs/electra/tiny.py` (generator + discriminator, Clark et al. 2020 §2) on the bundled Wikipedia +
Lee text, hands the discriminator to finetuning (patent US 2021/0089724: the generator is discarded), finetunes it
and a random-init encoder of the same shape on bundled tasks, and prints a score table.

  python -m electra_jax.demo --workdir=workdirs/electra_demo [--steps 80] [--tasks negation,wordnet_pos]
"""

from __future__ import annotations

import os

from absl import flags

from core import metrics as metrics_lib
from core.config import load_config_file
from core.main import run_app
from electra_jax import finetune, pretrain

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("workdir", "workdirs/electra_demo", "Where the pretraining and finetuning runs go (resumed).")
flags.DEFINE_integer("steps", 80, "Pretraining steps of the tiny ELECTRA (~1-2 min on 2 CPU cores).")
flags.DEFINE_string("tasks", "negation,wordnet_pos", "Bundled finetuning tasks (add polarity for a third row).")
flags.DEFINE_integer("train_size", 500, "Cap on finetuning examples per task (0 = all).")
FLAGS = flags.FLAGS


def main(argv) -> None:
  del argv
  config = load_config_file(os.path.join(_REPO, "configs/electra/tiny.py"))
  config.train.total_steps = FLAGS.steps
  config.train.checkpoint_every = FLAGS.steps
  pretrain_dir = os.path.join(FLAGS.workdir, "pretrain")
  pretrain.train_and_evaluate(config, pretrain_dir)
  # The run's metrics file, not the returned history: that holds this invocation's steps only, none when a finished
  # run is resumed (`make demo` a second time).
  last = metrics_lib.read_jsonl(pretrain_dir, "eval") or metrics_lib.read_jsonl(pretrain_dir, "train")
  print(
    f"pretrained {FLAGS.steps} steps: "
    + ", ".join(f"{k} {last[-1][k]:.3f}" for k in ("mlm_accuracy", "disc_auc", "disc_accuracy") if k in last[-1])
  )

  rows = []
  for task in FLAGS.tasks.split(","):
    scores = {}
    for name, init in (("random init", ""), ("ELECTRA-tiny", pretrain_dir)):
      ft = load_config_file(os.path.join(_REPO, "configs/electra/glue.py"), f"task={task},size=tiny")
      ft.init_checkpoint, ft.finetune.seeds, ft.train.progress = init, 1, False
      if FLAGS.train_size:
        ft.task.train_size = FLAGS.train_size
      out = finetune.run_task(ft, os.path.join(FLAGS.workdir, "finetune", task, name.split()[0].lower()))
      scores[name] = out["median"]
      metric = out["metric"]
    rows.append((task, metric, scores))
  print(f"\n{'task':14s}{'metric':12s}{'random init':>14s}{'ELECTRA-tiny':>14s}")
  for task, metric, scores in rows:
    print(f"{task:14s}{metric:12s}{scores['random init']:14.1f}{scores['ELECTRA-tiny']:14.1f}")


if __name__ == "__main__":
  run_app(main)  # absl app.run, library INFO logs hidden unless --verbosity
