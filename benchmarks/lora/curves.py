"""Dev-score learning curves of finetuning runs, side by side: the schedule pilot behind the paper-protocol table.

Reads each run's `metrics.jsonl` (written by `core.train` when the run had `--config.train.eval_every=N`) and its
`config.json`, and writes results/<name>.json (every eval point, the run's method, rank, learning rate and epochs)
and a plot of dev score against epoch. A curve that still rises at its last point says the schedule was too short;
one that has flattened says more steps will not close a gap.

  python -m lora_jax.finetune --config=configs/lora/cpu.py:seeds=1,epochs=10,lr=1e-3 \\
      --config.train.eval_every=125 --workdir=P/lora_e10_lr1e-3                      # (and method=full, ...)
  python -m benchmarks.lora.curves --name lora_schedule_pilot lora_lr1e-3=P/lora_e10_lr1e-3/seed_0 ...
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from benchmarks.core import common


def read_run(label: str, seed_dir: Path) -> dict:
  """One run's eval curve and settings; a one-line SystemExit when the directory is not a finetuning seed dir."""
  metrics, config_path = seed_dir / "metrics.jsonl", seed_dir / "config.json"
  if not metrics.is_file() or not config_path.is_file():
    raise SystemExit(f"{label}: {seed_dir} holds no metrics.jsonl + config.json of a finetuning seed (seed_<s>/)")
  config = json.loads(config_path.read_text())
  records = [json.loads(line) for line in metrics.read_text().splitlines()]
  evals = [r for r in records if r.get("split") == "eval"]
  trains = [r for r in records if r.get("split") != "eval" and "accuracy" in r]
  if not evals:
    raise SystemExit(f"{label}: {metrics} has no eval rows (train with --config.train.eval_every=N)")
  total, epochs = config["train"]["total_steps"], config["finetune"]["epochs"]
  steps_per_epoch, finished = total / epochs, evals[-1]["step"] == total
  return dict(
    run=label, workdir=str(seed_dir), method=config["lora"]["method"], rank=config["lora"]["rank"],
    lr=config["optimizer"]["peak_lr"], epochs=epochs, total_steps=total, seed=config["seed"],
    lora_dropout=config["lora"]["dropout"], finished=finished, final=evals[-1]["score"] if finished else None,
    # fit vs generalisation: the last logged train window's accuracy (dropout on) and the last dev accuracy
    train_accuracy=trains[-1]["accuracy"] if trains else None, dev_accuracy=evals[-1].get("accuracy"),
    best=max(r["score"] for r in evals),
    curve=[dict(step=r["step"], epoch=r["step"] / steps_per_epoch, score=r["score"]) for r in evals],
  )  # fmt: skip


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs", nargs="+", help="LABEL=SEED_DIR (a finetuning run's seed_<s> directory)")
  parser.add_argument("--name", default="lora_schedule_pilot")
  parser.add_argument("--note", default="", help="free text stored with the results (what the pilot decided)")
  args = parser.parse_args()
  pairs = [r.split("=", 1) for r in args.runs]
  if any(len(p) != 2 for p in pairs):
    parser.error("each run is LABEL=SEED_DIR")
  rows = [read_run(label, Path(path)) for label, path in pairs]
  for r in rows:
    final = f"{r['final']:.1f}" if r["final"] is not None else "unfinished"
    print(f"{r['run']:>18}: {r['method']} lr {r['lr']:g}, {r['epochs']:g} epochs: final {final}, best {r['best']:.1f} "
          f"({', '.join(format(p['score'], '.1f') for p in r['curve'])})")  # fmt: skip

  def plot(ax):
    for r in rows:
      ax.plot([p["epoch"] for p in r["curve"]], [p["score"] for p in r["curve"]], "o-" if r["finished"] else "o--",
              label=f"{r['run']} ({r['method']}, lr {r['lr']:g})", markersize=3)  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev score")
    ax.set_xlim(0, math.ceil(max(r["epochs"] for r in rows)))
    ax.set_title("Dev score during training (dashed: stopped early)")
    ax.legend(fontsize=7)

  path = common.write_results(args.name, dict(note=args.note, runs=rows), plot)
  print(f"wrote {path}, {path.with_suffix('.png')}")


if __name__ == "__main__":
  main()
