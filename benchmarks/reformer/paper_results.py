"""Reformer's accuracy claims at CPU scale: the duplication table (Table 2), byte-LM bits per character (LSH +
reversible vs a Transformer), ListOps accuracy. Each run is `reformer_jax.train` on a config of configs/reformer/.

  python -m benchmarks.reformer.paper_results --experiment duplication [--steps 1000] [--workdir workdirs/reformer]
  python -m benchmarks.reformer.paper_results --experiment char_lm
  python -m benchmarks.reformer.paper_results --experiment listops

A finished run leaves `final_eval.json` in its workdir, so a second call reuses it (a killed one resumes from its
checkpoint). Writes results/reformer_<experiment>.json (+ .png) with every run's final held-out metrics and the
training curve; the README tables come from these files.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from benchmarks.core import common
from core.config import load_config_file

CONFIGS = "configs/reformer"
EXPERIMENTS = {
  # name: [(run name, config file, config arg)]
  "duplication": [
    ("full", "duplication.py", "attention=full"),
    ("lsh1", "duplication.py", "attention=lsh,n_hashes=1"),
    ("lsh2", "duplication.py", "attention=lsh,n_hashes=2"),
    ("lsh4", "duplication.py", "attention=lsh,n_hashes=4"),
  ],
  "char_lm": [
    ("reformer", "char_lm.py", "attention=lsh,reversible=true"),
    ("transformer", "char_lm.py", "attention=full,reversible=false"),
    ("transformer_reversible", "char_lm.py", "attention=full,reversible=true"),  # which half of the gap is LSH
    ("shared_qk_full", "char_lm.py", "attention=full_shared_qk,reversible=true"),  # shared QK without hashing
    ("reformer_lsh4", "char_lm.py", "attention=lsh,reversible=true,n_hashes=4"),  # does more hashing close it?
    ("reformer_lsh8", "char_lm.py", "attention=lsh,reversible=true,n_hashes=8"),
    ("reformer_local_lsh", "char_lm.py", "attention=local_lsh,reversible=true"),  # the enwik8 config's layer mix
    ("local_full", "char_lm.py", "attention=local_full,reversible=true"),  # that mix with full attention for LSH
    ("local", "char_lm.py", "attention=local,reversible=true"),  # no LSH: what local context alone gives
  ],
  "listops": [("reformer", "listops.py", "size=cpu")],
}
EVAL_COLUMNS = ("full", "lsh1", "lsh2", "lsh4", "lsh8")


def run(name: str, path: str, arg: str, workdir: str, overrides: dict) -> dict:
  """Trains (or resumes) one run; returns {'final': last eval metrics, 'curve': [(step, split, metrics)], 'seconds'}."""
  from reformer_jax import train  # pylint: disable=g-import-not-at-top

  done = os.path.join(workdir, "final_eval.json")
  if os.path.exists(done):
    with open(done) as f:
      return json.load(f)
  config = load_config_file(os.path.join(CONFIGS, path), arg, {"train.progress": False, **overrides})
  started = time.perf_counter()
  result = train.train_and_evaluate(config, workdir)
  evals = [h for h in result.history if h["split"] == "eval"]
  record = {
    "name": name, "config": f"{CONFIGS}/{path}:{arg}", "overrides": overrides, "steps": config.train.total_steps,
    "final": evals[-1] if evals else {}, "curve": result.history, "seconds": time.perf_counter() - started,
  }  # fmt: skip
  with open(done, "w") as f:
    json.dump(record, f, indent=1)
  print(f"{name}: {record['final']}", flush=True)
  return record


def duplication_rows(records: list[dict]) -> dict:
  """Table 2's layout: rows = trained attention, columns = evaluated attention, accuracy (%) on the second half."""
  table = {}
  for record in records:
    final = record["final"]
    trained = record["name"]
    table[trained] = {
      column: 100.0 * final.get(f"accuracy@{column}", final["accuracy"] if column == trained else float("nan"))
      for column in EVAL_COLUMNS
    }
  return table


def _plot_duplication(table):
  def plot(ax):
    import numpy as np  # pylint: disable=g-import-not-at-top

    rows = list(table)
    values = np.array([[table[r][c] for c in EVAL_COLUMNS] for r in rows])
    ax.imshow(values, vmin=0, vmax=100, cmap="viridis")
    ax.set_xticks(range(len(EVAL_COLUMNS)), [f"eval {c}" for c in EVAL_COLUMNS])
    ax.set_yticks(range(len(rows)), [f"train {r}" for r in rows])
    for i in range(len(rows)):
      for j in range(len(EVAL_COLUMNS)):
        ax.text(j, i, f"{values[i, j]:.1f}", ha="center", va="center", color="w" if values[i, j] < 60 else "k")
    ax.set_title("Duplication task accuracy (%), cf. Reformer Table 2")

  return plot


def _plot_curves(records, metric):
  def plot(ax):
    for record in records:
      points = [(h["step"], h[metric]) for h in record["curve"] if h["split"] == "eval" and metric in h]
      if points:
        ax.plot(*zip(*points), marker="o", label=record["name"])
    ax.set_xlabel("step")
    ax.set_ylabel(f"held-out {metric}")
    ax.legend()

  return plot


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--experiment", choices=sorted(EXPERIMENTS), required=True)
  parser.add_argument("--workdir", default="workdirs/reformer")
  parser.add_argument("--steps", type=int, default=0, help="override train.total_steps (0 = the config's)")
  parser.add_argument("--runs", default="", help="comma-separated subset of the experiment's runs")
  parser.add_argument("--results_dir", default=None)
  args = parser.parse_args()
  overrides = {"train.total_steps": args.steps} if args.steps else {}
  wanted = set(args.runs.split(",")) if args.runs else None
  records = [
    run(name, path, arg, os.path.join(args.workdir, args.experiment, name), overrides)
    for name, path, arg in EXPERIMENTS[args.experiment]
    if wanted is None or name in wanted
  ]
  results: dict = {"experiment": args.experiment, "runs": records}
  if args.experiment == "duplication":
    results["table"] = duplication_rows(records)
    plot = _plot_duplication(results["table"])
    for trained, row in results["table"].items():
      print(f"train {trained:5s} | " + " | ".join(f"{c} {row[c]:5.1f}" for c in EVAL_COLUMNS))
  elif args.experiment == "char_lm":
    bpc = {r["name"]: r["final"]["bits_per_token"] for r in records}
    results["bits_per_character"] = bpc
    if {"reformer", "transformer"} <= set(bpc):
      results["reformer_minus_transformer"] = bpc["reformer"] - bpc["transformer"]
      print(f"bpc reformer {bpc['reformer']:.3f} | transformer {bpc['transformer']:.3f} | "
            f"difference {results['reformer_minus_transformer']:+.3f} (goal within 0.05)")  # fmt: skip
    if {"reformer_local_lsh", "local_full"} <= set(bpc):  # the enwik8 layer mix against itself with full attention
      results["local_lsh_minus_local_full"] = bpc["reformer_local_lsh"] - bpc["local_full"]
      print(f"bpc local+LSH {bpc['reformer_local_lsh']:.3f} | local+full {bpc['local_full']:.3f} | "
            f"difference {results['local_lsh_minus_local_full']:+.3f} (goal within 0.05)")  # fmt: skip
    plot = _plot_curves(records, "bits_per_token")
  else:
    from reformer_jax import listops, train  # pylint: disable=g-import-not-at-top

    config = load_config_file(os.path.join(CONFIGS, "listops.py"), "size=cpu")
    distribution = listops.class_distribution(train.listops_spec(config), config.seed, "validation",
                                              config.task.eval_examples)  # fmt: skip
    results["majority_class_accuracy"] = 100.0 * float(distribution.max())
    results["accuracy"] = {r["name"]: 100.0 * r["final"]["accuracy"] for r in records}
    print(f"ListOps accuracy {results['accuracy']} % | majority class {results['majority_class_accuracy']:.1f} % | "
          "goal >= 37 % (LRA's Reformer 37.27 %)")  # fmt: skip
    plot = _plot_curves(records, "accuracy")
  path = common.write_results(f"reformer_{args.experiment}", results, plot, args.results_dir)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
