"""REALM's pretraining claims at CPU scale, on the seeded synthetic knowledge corpus (realm_jax/synthetic.py).

Guu et al. 2020 (arXiv 2002.08909) §3.3-3.4 and Table 2: retrieval lets the masked-LM predict facts it has never
memorised (held-out entities appear only in documents: with ∅ alone the model is at chance, 1/8); the index must be
refreshed while the retriever learns (a 30x stale index: NQ 38.2 -> 28.7 EM); a cold-start retriever does not learn
without the ICT warm start. Runs, each through the entry points' code into WORKDIR/<run>/ (resumable):
  ict             python -m realm_jax.ict --config=configs/realm/ict.py (the warm start)
  refreshed       pretrain from the ICT retriever, index refreshed every realm.refresh_every steps
  stale           the same, index never refreshed after step 0
  random_init     pretrain from a random retriever, refreshed
Writes results/realm_synthetic.json (final held-out accuracy with retrieval and with ∅ alone, gold recall@k, the
refresh's share of wall time) and .png (held-out gold recall@k and accuracy over training).

  python -m benchmarks.realm.paper_results --workdir /tmp/realm_runs [--steps 400] [--only refreshed,stale]
"""

from __future__ import annotations

import argparse
import json
import os

from benchmarks.core import common

NAME = "realm_synthetic"


def _history(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--steps", type=int, default=400, help="pretraining steps per run")
  parser.add_argument("--ict_steps", type=int, default=400)
  parser.add_argument("--only", default="", help="comma-separated pretraining runs (default: all)")
  parser.add_argument("--name", default=NAME)
  args = parser.parse_args()
  from realm_jax import ict, pretrain  # pylint: disable=g-import-not-at-top  # (--help without jax)
  from tests.helpers import load_config  # pylint: disable=g-import-not-at-top

  ict_dir = os.path.join(args.workdir, "ict")
  ict_config = load_config("configs/realm/ict.py", None, {"train.total_steps": args.ict_steps, "train.progress": False})
  ict.train_and_evaluate(ict_config, ict_dir)
  ict_eval = [h for h in _history(ict_dir) if h["split"] == "eval"][-1]
  print(f"ict: held-out pseudo-query recall@1 {ict_eval['recall_at_1']:.3f}, recall@5 {ict_eval['recall_at_5']:.3f}")

  runs = {
    "refreshed": {"retriever_from": ict_dir},
    "stale": {"retriever_from": ict_dir, "realm.refresh_every": args.steps + 1},
    "random_init": {},
  }
  rows = []
  for name, overrides in runs.items():
    if args.only and name not in args.only.split(","):
      continue
    config = load_config("configs/realm/pretrain.py", None,
                         {**overrides, "train.total_steps": args.steps, "train.progress": False})
    run_dir = os.path.join(args.workdir, name)
    pretrain.train_and_evaluate(config, run_dir)
    with open(os.path.join(run_dir, "results.json")) as f:
      results = json.load(f)
    final = results["final_eval"]
    evals = [h for h in _history(run_dir) if h["split"] == "eval"]
    rows.append(dict(run=name, overrides=overrides, final=final, refresh_share=results["refresh_share"],
                     refreshes=results["index_refreshes"], train_seconds=results["train_seconds"],
                     eval_curve=[{k: h[k] for k in ("step", "accuracy", "null_accuracy", "gold_recall_at_k")}
                                 for h in evals]))  # fmt: skip
    print(f"{name:>12}: held-out accuracy {100 * final['accuracy']:.1f}% with retrieval, "
          f"{100 * final['null_accuracy']:.1f}% with the null document alone (chance 12.5%), gold recall@k "
          f"{final['gold_recall_at_k']:.3f}; {results['index_refreshes']} refreshes, "
          f"{100 * results['refresh_share']:.1f}% of wall time", flush=True)  # fmt: skip

  def plot(ax):
    for row, color in zip(rows, "bgrcm"):
      steps = [p["step"] for p in row["eval_curve"]]
      ax.plot(steps, [p["gold_recall_at_k"] for p in row["eval_curve"]], "-", color=color,
              label=f"{row['run']}: gold recall@k")
      ax.plot(steps, [p["accuracy"] for p in row["eval_curve"]], "--", color=color, label=f"{row['run']}: accuracy")
    ax.axhline(0.125, color="gray", linestyle=":", label="chance (1/8)")
    ax.set_xlabel("pretraining step")
    ax.set_ylabel("held-out queries")
    ax.set_title("REALM on synthetic knowledge (tiny encoders, CPU)")
    ax.legend(fontsize=7)

  path = common.write_results(args.name, dict(settings=vars(args), ict=ict_eval, rows=rows), plot)
  print(f"wrote {path}, {path.with_suffix('.png')}")


if __name__ == "__main__":
  main()
