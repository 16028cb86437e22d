"""REALM's pretraining claims at CPU scale, on the seeded synthetic knowledge corpus (realm_jax/synthetic.py).

Guu et al. 2020 (arXiv 2002.08909) §3.3-3.4 and Table 2: retrieval lets the masked-LM predict facts it has never
memorised (held-out entities appear only in documents: with ∅ alone the model is at chance, 1/8); the index must be
refreshed while the retriever learns (a 30x stale index: NQ 38.2 -> 28.7 EM); a retriever without the ICT warm start
does not learn. Runs, each through the entry points' code into WORKDIR/<run>/ (resumable: a finished run is read back):
  ict             python -m realm_jax.ict --config=configs/realm/ict.py:corpus=synthetic,size=SIZE (the warm start)
  refreshed       pretrain from the ICT retriever, index refreshed every realm.refresh_every steps
  stale           the same, index never refreshed after step 0
  no_ict          pretrain without the warm start (the retriever of `init_from`: random for tiny, MiniLM's encoder)
  no_ict_stale    the same, index never refreshed after step 0 (the ablation where the retriever has to learn)
With --reader_steps N every pretraining run starts its reader from a reader trained N steps on the gold document
alone (benchmarks/realm/reader_oracle.py, saved to WORKDIR/reader; `reader_from`): a reader that reads from step 0,
as the paper's BERT MLM head does (MiniLM has none). The ICT run is made only when a selected run needs it.
Writes results/NAME.json (final held-out accuracy with retrieval and with ∅ alone, gold recall@k, the refresh's
share of wall time, the eval curves) and .png (held-out gold recall@k and accuracy over training).

  python -m benchmarks.realm.paper_results --workdir /tmp/realm_runs [--steps 400] [--only refreshed,stale]  # tiny
  python -m benchmarks.realm.paper_results --workdir /tmp/realm_minilm --size minilm --entities 200 --ict_steps 150 \
      --ict_eval_every 50 --steps 400 --batch 8 --delay 150 --k 2 --query_len 24 --eval_every 50 \
      --eval_queries 512 --only refreshed,stale,no_ict --name realm_synthetic_minilm      # realm_jax/README.md's runs
  python -m benchmarks.realm.paper_results --workdir /tmp/realm_stale --size minilm --entities 200 --ict_steps 20 \
      --ict_eval_every 10 --steps 400 --batch 8 --k 2 --query_len 24 --eval_every 50 --eval_queries 512 \
      --reader_steps 250 --retriever_lr 0.1 --refresh_every 10 --only refreshed,stale \
      --name realm_stale_ablation_minilm                        # the stale-index ablation: 0.781 vs 0.350
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from benchmarks.core import common

NAME = "realm_synthetic"
RUNS = ("refreshed", "stale", "no_ict", "no_ict_stale")


def _history(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def main(argv: list[str] | None = None) -> Path:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--size", default="tiny", help="tiny | minilm (configs/realm/common.py)")
  parser.add_argument("--entities", type=int, default=100, help="synthetic entities (a fifth held out)")
  parser.add_argument("--steps", type=int, default=400, help="pretraining steps per run")
  parser.add_argument("--batch", type=int, default=8, help="pretraining batch size")
  parser.add_argument("--delay", type=int, default=0, help="realm.retriever_delay_steps: the reader's warm-up")
  parser.add_argument("--k", type=int, default=0, help="realm.k, retrieved documents per query (0: the config's)")
  parser.add_argument("--retriever_lr", type=float, default=0.0,
                      help="realm.retriever_lr_multiplier, the embedders' LR / the reader's (0: the config's)")
  parser.add_argument("--refresh_every", type=int, default=0, help="realm.refresh_every (0: the config's)")
  parser.add_argument("--query_len", type=int, default=0, help="data.query_len (0: the config's)")
  parser.add_argument("--eval_every", type=int, default=0, help="pretraining eval cadence (0: steps / 4)")
  parser.add_argument("--ict_steps", type=int, default=400)
  parser.add_argument("--ict_eval_queries", type=int, default=40, help="held-out ICT documents (pseudo-queries)")
  parser.add_argument("--ict_eval_every", type=int, default=0, help="ICT eval cadence (0: ict_steps / 4)")
  parser.add_argument("--eval_queries", type=int, default=256)
  parser.add_argument("--reader_steps", type=int, default=0, help="steps of the gold-document reader (0: none)")
  parser.add_argument("--reader_batch", type=int, default=16)
  parser.add_argument("--only", default="", help="comma-separated pretraining runs (default: all)")
  parser.add_argument("--name", default=NAME)
  parser.add_argument("--results_dir", default=None, help="default: the repository's results/")
  args = parser.parse_args(argv)
  from benchmarks.realm import reader_oracle  # pylint: disable=g-import-not-at-top  # (--help without jax)
  from realm_jax import ict, pretrain  # pylint: disable=g-import-not-at-top
  from tests.helpers import load_config  # pylint: disable=g-import-not-at-top

  selected = [name for name in RUNS if not args.only or name in args.only.split(",")]
  if bad := [name for name in (args.only.split(",") if args.only else []) if name not in RUNS]:
    parser.error(f"--only: unknown run {bad[0]!r} (allowed: {', '.join(RUNS)})")
  ict_dir, ict_eval, ict_curve = os.path.join(args.workdir, "ict"), None, []
  if {"refreshed", "stale"} & set(selected):
    ict_config = load_config("configs/realm/ict.py", f"corpus=synthetic,size={args.size}", {
      "data.num_entities": args.entities, "eval.num_queries": args.ict_eval_queries,
      "train.total_steps": args.ict_steps, "train.eval_every": args.ict_eval_every or max(1, args.ict_steps // 4),
      "train.progress": False})
    ict.train_and_evaluate(ict_config, ict_dir)
    ict_curve = [h for h in _history(ict_dir) if h["split"] == "eval"]
    ict_eval = ict_curve[-1]
    print(f"ict: held-out pseudo-query recall@1 {ict_eval['recall_at_1']:.3f}, recall@5 {ict_eval['recall_at_5']:.3f}")
  reader, reader_record = {}, None
  if args.reader_steps:
    reader_dir = os.path.join(args.workdir, "reader")
    if not os.path.isdir(os.path.join(reader_dir, "reader")):  # resumable: a saved reader is read back
      reader_oracle.train_reader(argparse.Namespace(
        size=args.size, entities=args.entities, steps=args.reader_steps, batch=args.reader_batch, lr=0.0,
        eval_every=max(1, args.reader_steps // 4), eval_queries=args.eval_queries, save_reader=reader_dir), "gold")
    with open(os.path.join(reader_dir, "reader.json")) as f:
      reader_record = json.load(f)
    print(f"reader: held-out accuracy with the gold document {reader_record['final']['heldout_gold']:.3f}")
    reader = {"reader_from": reader_dir}

  common_overrides = {"data.num_entities": args.entities, "train.batch_size": args.batch,
                      "train.total_steps": args.steps, "train.eval_every": args.eval_every or max(1, args.steps // 4),
                      "realm.retriever_delay_steps": args.delay, "realm.eval_queries": args.eval_queries,
                      "train.progress": False, **reader}  # fmt: skip
  common_overrides.update({"realm.k": args.k} if args.k else {})
  common_overrides.update({"data.query_len": args.query_len} if args.query_len else {})
  common_overrides.update({"realm.retriever_lr_multiplier": args.retriever_lr} if args.retriever_lr else {})
  common_overrides.update({"realm.refresh_every": args.refresh_every} if args.refresh_every else {})
  overrides_by_run = {
    "refreshed": {"retriever_from": ict_dir},
    "stale": {"retriever_from": ict_dir, "realm.refresh_every": args.steps + 1},
    "no_ict": {},
    "no_ict_stale": {"realm.refresh_every": args.steps + 1},
  }
  rows = []
  for name in selected:
    overrides = overrides_by_run[name]
    config = load_config("configs/realm/pretrain.py", f"size={args.size}", {**common_overrides, **overrides})
    run_dir = os.path.join(args.workdir, name)
    pretrain.train_and_evaluate(config, run_dir)
    with open(os.path.join(run_dir, "results.json")) as f:
      results = json.load(f)
    final = results["final_eval"]
    evals = [h for h in _history(run_dir) if h["split"] == "eval"]
    trains = [h for h in _history(run_dir) if h["split"] == "train"]
    rows.append(dict(run=name, overrides=overrides, final=final, refresh_share=results["refresh_share"],
                     refreshes=results["index_refreshes"], train_seconds=results["train_seconds"],
                     eval_curve=[{k: h[k] for k in ("step", "accuracy", "null_accuracy", "gold_recall_at_k", "p_null")}
                                 for h in evals],
                     train_curve=[{k: h[k] for k in ("step", "accuracy", "gold_recall_at_k", "p_null")}
                                  for h in trains]))  # fmt: skip
    print(f"{name:>12}: held-out accuracy {100 * final['accuracy']:.1f}% with retrieval, "
          f"{100 * final['null_accuracy']:.1f}% with the null document alone (chance 12.5%), gold recall@k "
          f"{final['gold_recall_at_k']:.3f}; {results['index_refreshes']} refreshes, "
          f"{100 * results['refresh_share']:.1f}% of wall time", flush=True)  # fmt: skip

  def plot(ax):
    for row, color in zip(rows, "bgrcmk"):
      steps = [p["step"] for p in row["eval_curve"]]
      ax.plot(steps, [p["gold_recall_at_k"] for p in row["eval_curve"]], "-", color=color,
              label=f"{row['run']}: gold recall@k")
      ax.plot(steps, [p["accuracy"] for p in row["eval_curve"]], "--", color=color, label=f"{row['run']}: accuracy")
    ax.axhline(0.125, color="gray", linestyle=":", label="chance (1/8)")
    ax.set_xlabel("pretraining step")
    ax.set_ylabel("held-out queries")
    ax.set_title(f"REALM on synthetic knowledge ({args.size}, {args.entities} entities, CPU)")
    ax.legend(fontsize=7)

  results = dict(settings=vars(args), ict=ict_eval, ict_curve=ict_curve, reader=reader_record, rows=rows)
  path = common.write_results(args.name, results, plot, results_dir=args.results_dir)
  print(f"wrote {path}, {path.with_suffix('.png')}")
  return path


if __name__ == "__main__":
  main()
