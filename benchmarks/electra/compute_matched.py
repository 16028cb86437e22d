"""ELECTRA vs MLM at equal pretraining compute (the shape of the paper's Figure 1 / Table 1 claim), CPU to pod scale.

For each pretraining seed: ELECTRA-`--size` (default tiny) for `--electra_steps` steps and its MLM twin for the steps
that spend the same pretraining FLOPs (`electra_jax.flops`, the reference's counting), both on the same text (the
config's corpus, the bundled Wikipedia + Lee text by default, or `--corpus tfds:openwebtext`).
The encoders each run exports at the `--fractions` of its steps (`WORKDIR/export/step_<N>/`, `electra_jax.export`)
are finetuned on the downstream tasks (one finetuning run per checkpoint and task, seeded by the pretraining seed);
a random-init encoder gives the zero-compute point. Reported: per-task scores, their mean over tasks, mean ± std
over pretraining seeds, ELECTRA − MLM and its size in σ.
Every stage is cached in `--workdir`, so an interrupted run continues, and seeds can run as parallel processes
(`--seeds 1`, `--seeds 2`) before one `--seeds 0,1,2` call collects them.

Defaults (the README's run): 1,000 ELECTRA steps at the tiny config's LR 1e-4 with 10% warm-up; finetuning for
10 epochs on 1,000 examples (with glue.py's 3 epochs = 94 steps, finetuning from the ELECTRA checkpoint ends
before its loss leaves the ln 4 plateau on wordnet_pos; it leaves it after ~150 steps).

The second README run: --electra_steps 600 --tasks word_order,wordnet_pos --results_dir
results/electra_compute_matched_600. `--ablation` adds ELECTRA 15% (discriminator loss on the masked positions only).

The paper-scale run (an accelerator; not run here) matches the paper's smallest Table 1 point, ELECTRA-Small at
6.25% of its 1M steps (GLUE dev 74.1), with the paper's configs end to end and GLUE dev sets from GLUE's download
script (else tfds):

  python -m benchmarks.electra.compute_matched --size small --electra_steps 62500 --corpus tfds:openwebtext \
      --tasks cola,sst2,mrpc,stsb,qnli,rte --glue_dir glue_data --train_size 0 --finetune_epochs 0 \
      --warmup_fraction 0 --workdir workdirs/cm_small

  python -m benchmarks.electra.compute_matched [--size tiny] [--seeds 0,1,2] [--electra_steps 1000] \
      [--tasks wordnet_pos,negation] [--fractions 0.5,1.0] [--train_size 1000] [--finetune_epochs 10] \
      [--corpus CONFIG] [--glue_dir DIR] [--batch_size CONFIG] [--pretrain_set KEY=VALUE ...] \
      [--workdir workdirs/electra_compute_matched] [--ablation] [--results_dir results]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import time

import numpy as np

from benchmarks.core import common
from configs.electra import common as electra_common
from core.config import ConfigError
from core.config import load_config_file as load_config
from electra_jax import finetune, pretrain

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GLUE = os.path.join(REPO, "configs/electra/glue.py")
# GLUE task -> its directory in the tree written by GLUE's download_glue_data.py (train.tsv, dev.tsv)
GLUE_DIRS = {
  "cola": "CoLA",
  "sst2": "SST-2",
  "mrpc": "MRPC",
  "stsb": "STS-B",
  "qqp": "QQP",
  "mnli": "MNLI",
  "qnli": "QNLI",
  "rte": "RTE",
}


def parse_overrides(items: list[str] | None) -> dict:
  """['optimizer.b2=0.98', 'optimizer.bias_correction=true'] -> {'optimizer.b2': 0.98, ...} (Python literals,
  true/false, else the string)."""
  overrides = {}
  for item in items or []:
    key, sep, text = item.partition("=")
    if not sep or not key:
      raise ConfigError(f"--pretrain_set: expected KEY=VALUE, got {item!r}")
    try:
      value = {"true": True, "false": False}.get(text.lower(), None)
      overrides[key] = ast.literal_eval(text) if value is None else value
    except (SyntaxError, ValueError):
      overrides[key] = text
  return overrides


def pretrain_config(size: str, objective: str, corpus: str = "", batch_size: int = 0, overrides: dict | None = None):
  """configs/electra/<size>.py for `objective` ('electra', 'mlm' = the twin, 'electra15' = the 15% ablation)."""
  path, arg = os.path.join(REPO, f"configs/electra/{size}.py"), "mlm=true" if objective == "mlm" else None
  try:
    config = load_config(path, arg, overrides)
  except (AttributeError, KeyError, TypeError) as e:  # an unknown or mistyped --pretrain_set field
    raise ConfigError(f"--pretrain_set: {' '.join(str(e).split())}") from e
  config.objective.disc_on_masked_only = objective == "electra15"  # the "ELECTRA 15%" ablation (paper Table 5)
  if corpus:
    config.data.corpus = corpus
  if batch_size:
    config.train.batch_size = batch_size
  return config


def pretrain_run(
  objective: str, seed: int, steps: int, fractions, workdir: str, args: argparse.Namespace, overrides: dict
) -> dict:
  """Runs (or resumes) one pretraining run; returns {'steps': [...], 'flops_per_step': f}."""
  config = pretrain_config(args.size, objective, args.corpus, args.batch_size, overrides)
  if args.pretrain_lr:
    config.optimizer.peak_lr = args.pretrain_lr
  if args.warmup_fraction:
    config.optimizer.warmup_steps = max(1, round(args.warmup_fraction * steps))
  saves = sorted({max(1, round(steps * f)) for f in fractions})
  config.seed = seed
  config.train.total_steps = steps
  config.train.checkpoint_every = saves[0] if len(saves) == 1 else int(np.gcd.reduce(saves))
  config.train.keep_checkpoints = 1  # finetuning reads the exports; the last checkpoint resumes
  config.train.eval_every = 0
  config.train.progress = False
  done = os.path.join(workdir, "flops.json")
  if not (os.path.exists(done) and os.path.isdir(os.path.join(workdir, "checkpoints", str(steps)))):
    pretrain.train_and_evaluate(config, workdir)
  return {"steps": saves, "flops_per_step": pretrain.flops_per_step(config)}


def finetune_score(task: str, seed: int, init: str, step: int, workdir: str, args: argparse.Namespace) -> float:
  """One finetuning run of the `init` checkpoint ('' = random init of `--size`) on `task`, cached in `workdir`."""
  path = os.path.join(workdir, "results.json")
  if os.path.exists(path):
    return float(json.load(open(path))["median"])
  train_size, epochs = args.train_size, args.finetune_epochs
  config = load_config(GLUE, f"task={task},size={args.size}", {})
  if args.glue_dir and task in GLUE_DIRS:
    config.task.data_dir = os.path.join(args.glue_dir, GLUE_DIRS[task])
  config.init_checkpoint = init
  config.init_checkpoint_step = step
  config.seed = seed
  config.finetune.seeds = 1
  config.train.progress = False
  if train_size:
    config.task.train_size = train_size
  if epochs:
    config.finetune.epochs = epochs
  return float(finetune.run_task(config, workdir)["median"])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", default="tiny", choices=sorted(electra_common.SIZES))
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--electra_steps", type=int, default=1000)
  parser.add_argument("--tasks", default="wordnet_pos,negation")
  parser.add_argument("--fractions", default="0.5,1.0")
  parser.add_argument("--train_size", type=int, default=1000, help="cap on finetuning examples per task (0 = all)")
  parser.add_argument("--pretrain_lr", type=float, default=0.0, help="peak pretraining LR (0 = the size config's)")
  parser.add_argument(
    "--finetune_epochs", type=float, default=10.0, help="finetuning epochs (0 = configs/electra/glue.py)"
  )
  parser.add_argument("--warmup_fraction", type=float, default=0.1, help="pretraining warmup / steps (0 = config)")
  parser.add_argument(
    "--ablation", action="store_true", help="also ELECTRA 15%% (discriminator loss on masked positions only)"
  )
  parser.add_argument("--corpus", default="", help="pretraining corpus (default: the config's, the bundled text)")
  parser.add_argument("--batch_size", type=int, default=0, help="pretraining batch (0 = the config's)")
  parser.add_argument(
    "--pretrain_set",
    action="append",
    metavar="KEY=VALUE",
    help="override a pretraining config field for both objectives, e.g. optimizer.b2=0.98 (repeatable)",
  )
  parser.add_argument("--glue_dir", default="", help="GLUE TSV tree (CoLA/, SST-2/, ...); '' = tfds glue/<task>")
  parser.add_argument("--workdir", default="workdirs/electra_compute_matched")
  parser.add_argument("--results_dir", default=None, help="where the JSON + plot go (default: results/)")
  args = parser.parse_args()
  if args.electra_steps < 1:
    parser.error(f"--electra_steps: must be >= 1, got {args.electra_steps}")
  for task in args.tasks.split(","):  # bad task names fail here, before any pretraining
    try:
      load_config(GLUE, f"task={task},size={args.size}", {})
    except ConfigError as e:
      parser.error(f"--tasks: {e}")
  seeds = [int(s) for s in args.seeds.split(",")]
  tasks = args.tasks.split(",")
  fractions = [float(f) for f in args.fractions.split(",")]
  started = time.perf_counter()

  try:  # an unknown --corpus or --pretrain_set field: one line before any work
    overrides = parse_overrides(args.pretrain_set)
    electra_config = pretrain_config(args.size, "electra", args.corpus, args.batch_size, overrides)
    mlm_config = pretrain_config(args.size, "mlm", args.corpus, args.batch_size, overrides)
    pretrain.validate(electra_config)
    pretrain.validate(mlm_config)
  except ConfigError as e:
    parser.error(str(e))
  electra_flops = pretrain.flops_per_step(electra_config) * args.electra_steps
  mlm_steps = max(1, round(electra_flops / pretrain.flops_per_step(mlm_config)))
  print(f"ELECTRA {args.electra_steps} steps = {electra_flops:.3g} FLOPs; MLM twin {mlm_steps} steps", flush=True)

  rows = []  # one per (objective, seed, step)
  for seed in seeds:
    random_scores = {
      t: finetune_score(t, seed, "", 0, os.path.join(args.workdir, f"random/s{seed}/{t}"), args) for t in tasks
    }
    rows.append(dict(objective="random_init", seed=seed, step=0, flops=0.0, scores=random_scores))
    runs = [("electra", args.electra_steps), ("mlm", mlm_steps)] + [("electra15", args.electra_steps)] * args.ablation
    for objective, steps in runs:
      run_dir = os.path.join(args.workdir, f"{objective}/s{seed}")
      run = pretrain_run(objective, seed, steps, fractions, run_dir, args, overrides)
      for step in run["steps"]:
        scores = {
          t: finetune_score(t, seed, run_dir, step, os.path.join(run_dir, f"ft_{step}/{t}"), args) for t in tasks
        }
        rows.append(dict(objective=objective, seed=seed, step=step, flops=step * run["flops_per_step"], scores=scores))
        print(
          f"{objective:8s} seed {seed} step {step:5d} ({rows[-1]['flops']:.3g} FLOPs): "
          + " ".join(f"{t} {s:.1f}" for t, s in scores.items()),
          flush=True,
        )

  def final(objective):
    final_rows = [
      r
      for r in rows
      if r["objective"] == objective and r["step"] == max(q["step"] for q in rows if q["objective"] == objective)
    ]
    per_seed = np.array([np.mean(list(r["scores"].values())) for r in final_rows])
    per_task = {t: [r["scores"][t] for r in final_rows] for t in tasks}
    return per_seed, per_task

  objectives = ("random_init", "electra", "mlm") + ("electra15",) * args.ablation
  summary = {}
  for objective in objectives:
    per_seed, per_task = final(objective)
    summary[objective] = dict(
      mean=float(per_seed.mean()),
      std=float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0,
      per_seed=per_seed.tolist(),
      per_task={
        t: dict(mean=float(np.mean(v)), std=float(np.std(v, ddof=1)) if len(v) > 1 else 0.0)
        for t, v in per_task.items()
      },
    )
  gap = summary["electra"]["mean"] - summary["mlm"]["mean"]
  pooled = float(np.sqrt((summary["electra"]["std"] ** 2 + summary["mlm"]["std"] ** 2) / len(seeds)))
  sigmas = gap / pooled if pooled > 0 else 0.0
  print("\ntask         " + "".join(f"{o:>22s}" for o in objectives))
  for t in tasks:
    print(
      f"{t:12s} "
      + "".join(
        f"{summary[o]['per_task'][t]['mean']:15.1f} ± {summary[o]['per_task'][t]['std']:4.1f}" for o in objectives
      )
    )
  print(f"{'mean':12s} " + "".join(f"{summary[o]['mean']:15.1f} ± {summary[o]['std']:4.1f}" for o in objectives))
  print(
    f"ELECTRA - MLM at equal compute ({electra_flops:.3g} FLOPs): {gap:+.2f} points, {sigmas:.1f} standard errors "
    f"(goal >= 2 points and > 2 sigma) | {time.perf_counter() - started:.0f} s"
  )

  def plot(ax):
    colors = {"electra": "tab:blue", "mlm": "tab:orange", "electra15": "tab:green"}
    for objective in objectives[1:]:
      color = colors[objective]
      xs = sorted({r["flops"] for r in rows if r["objective"] == objective})
      means, stds = [], []
      for x in xs:
        vals = [np.mean(list(r["scores"].values())) for r in rows if r["objective"] == objective and r["flops"] == x]
        means.append(np.mean(vals))
        stds.append(np.std(vals, ddof=1) if len(vals) > 1 else 0.0)
      base = summary["random_init"]["mean"]
      ax.errorbar(
        [0.0] + xs,
        [base] + means,
        yerr=[summary["random_init"]["std"]] + stds,
        marker="o",
        capsize=3,
        color=color,
        label={"electra": "ELECTRA", "mlm": "MLM twin", "electra15": "ELECTRA 15%"}[objective],
      )
    ax.set_xlabel("pretraining FLOPs")
    ax.set_ylabel(f"mean downstream score ({', '.join(tasks)})")
    ax.set_title(f"ELECTRA-{args.size} vs MLM at equal compute ({common.metadata()['backend']})")
    ax.legend()

  path = common.write_results(
    "electra_compute_matched",
    dict(
      size=args.size,
      corpus=electra_config.data.corpus,
      batch_size=electra_config.train.batch_size,
      pretrain_overrides=overrides,
      seeds=seeds,
      tasks=tasks,
      electra_steps=args.electra_steps,
      mlm_steps=mlm_steps,
      pretrain_flops=electra_flops,
      fractions=fractions,
      train_size=args.train_size,
      pretrain_lr=args.pretrain_lr or electra_config.optimizer.peak_lr,
      warmup_fraction=args.warmup_fraction or "config",
      finetune_epochs=args.finetune_epochs or "config",
      rows=rows,
      summary=summary,
      electra_minus_mlm=gap,
      standard_errors=sigmas,
      seconds=time.perf_counter() - started,
    ),
    plot,
    results_dir=args.results_dir,
  )
  print(f"wrote {path}, {path.with_suffix('.png')}")


if __name__ == "__main__":
  main()
