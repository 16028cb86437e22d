"""The paper's claim at CPU scale: LoRA on Wq, Wv matches full finetuning with <= 1% of the parameters trained.

Hu et al. 2021 (arXiv 2106.09685) Table 2 (RoBERTa on GLUE: LoRA 87.2 vs full 86.4 with 0.3M vs 125M trained) and
Table 6 (rank r = 1 ... 64 on Wq, Wv all within a few tenths). Here: the bundled MiniLM-L6 (a real BERT-family
checkpoint) on a generated GLUE-format task with a 2,000-example dev set (configs/lora/cpu.py), per run `seeds`
seeds: head-only, full finetuning, LoRA q/v at ranks `--ranks`, LoRA on all linear layers. Every run goes through
the entry point's code (`lora_jax.finetune.run_task`) into WORKDIR/<run>/ (resumable: finished seeds are kept), and
the table, with each run's trainable fraction, goes to results/<name>.json + .png.

  python -m benchmarks.lora.paper_results --workdir /tmp/lora_runs [--task word_order] [--ranks 1,2,4,8,16]
  python -m benchmarks.lora.paper_results --workdir W --epochs 3 --lora_epochs 10 --lora_lr 1e-3 --only full,lora_qv_r8 \
      --name lora_paper_protocol        # the paper's protocol: LoRA trains for more epochs than full finetuning
  python -m benchmarks.lora.paper_results --workdir W --epochs 3 --lora_epochs 10 --lora_lr 1e-3 --ranks 16 \
      --only lora_qv_r16 --include lora_paper_protocol --name lora_paper_protocol   # one more row, the rest kept
  python -m benchmarks.lora.paper_results --workdir W --epochs 3 --lora_epochs 10 --lora_lr 1e-3 --ranks 16 \
      --classifier linear --only lora_qv_r16_linear,full_linear --include lora_paper_protocol --name lora_paper_protocol
      # both methods with a linear head (dense(K) on [CLS]): LoRA's adapters + head stay under 1% of the model

`--lora_epochs` (default: `--epochs`) is the LoRA rows' schedule: the paper tunes each method's epochs on its own
(Table 9: LoRA on RoBERTa-base 25-80 epochs, against the 10 of the full-finetuning baseline it quotes).
"""

from __future__ import annotations

import argparse
import json
import os
import runpy

from benchmarks.core import common

NAME = "lora_paper_cpu"


def runs(ranks: list[int], classifier: str = "mlp") -> list[tuple[str, str]]:
  """(run name, configs/lora/cpu.py arg) in the order they are worth having: the comparison first, then the sweep.
  Rows with another head than the default 'mlp' are named <run>_<classifier>."""
  first = [("full", "method=full"), ("lora_qv_r8", "method=lora,rank=8"), ("head", "method=head")]
  rest = [("lora_all_r8", "method=lora,targets=all_linear,rank=8")]
  rest += [(f"lora_qv_r{r}", f"method=lora,rank={r}") for r in ranks if r != 8]
  if classifier != "mlp":
    return [(f"{name}_{classifier}", f"{arg},classifier={classifier}") for name, arg in first + rest]
  return first + rest


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--task", default="word_order")
  parser.add_argument("--ranks", default="1,2,4,8,16")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--epochs", type=float, default=3.0)
  parser.add_argument("--lora_epochs", type=float, default=0.0, help="epochs of the LoRA rows (0 = --epochs)")
  parser.add_argument("--lora_lr", type=float, default=0.0, help="peak LR of the LoRA rows (0 = configs/lora/cpu.py's)")
  parser.add_argument("--classifier", default="mlp", choices=("mlp", "linear"),
                      help="every row's head (linear: dense(K) on [CLS], 770 parameters; run names gain _linear)")
  parser.add_argument("--only", default="", help="comma-separated run names (default: all)")
  parser.add_argument("--name", default=NAME)
  parser.add_argument("--include", default="", help="comma-separated earlier results names (results/<name>.json) "
                      "whose rows join this table and plot, marked with 'from' (a run named again here replaces them)")
  args = parser.parse_args()
  included = [dict(row, **{"from": prior}) for prior in filter(None, args.include.split(","))
              for row in _rows_of(prior, args.task)]  # fmt: skip
  from lora_jax import finetune  # pylint: disable=g-import-not-at-top  # (--help without jax)

  get_config = runpy.run_path(os.path.join(os.path.dirname(__file__), "../../configs/lora/cpu.py"))["get_config"]
  rows = []
  for name, arg in runs([int(r) for r in args.ranks.split(",") if r], args.classifier):
    if args.only and name not in args.only.split(","):
      continue
    lora = "method=lora" in arg
    epochs = args.lora_epochs if args.lora_epochs and lora else args.epochs
    lr = f",lr={args.lora_lr}" if args.lora_lr and lora else ""
    config = get_config(f"task={args.task},seeds={args.seeds},epochs={epochs},{arg}{lr}")
    finetune.validate(config)
    results = finetune.run_task(config, os.path.join(args.workdir, name))
    counts = results["parameters"]  # adapter_fraction: the paper's Table 2 count (adapters alone, not the head)
    adapter_fraction = counts["trainable_by_group"].get("lora", 0) / counts["total"]
    rows.append(dict(run=name, method=config.lora.method, targets=config.lora.targets, rank=config.lora.rank,
                     classifier=config.finetune.classifier, lr=config.optimizer.peak_lr, epochs=epochs,
                     scores=results["scores"], median=results["median"], mean=results["mean"], std=results["std"],
                     adapter_fraction=adapter_fraction,
                     **counts))  # fmt: skip
    print(f"{name:>12}: {results['metric']} median {results['median']:.2f}, mean {results['mean']:.2f} ± "
          f"{results['std']:.2f} (seeds {', '.join(f'{s:.1f}' for s in results['scores'])}), trainable "
          f"{100 * counts['trainable_fraction']:.2f}% (adapters {100 * adapter_fraction:.2f}%)",
          flush=True)  # fmt: skip

  rows = [r for r in included if r["run"] not in {new["run"] for new in rows}] + rows

  def plot(ax):
    for classifier, style in (("mlp", "o-"), ("linear", "s-")):  # older rows: the mlp head, no 'classifier' field
      sweep = sorted((r["rank"], r["median"], r["scores"]) for r in rows
                     if r["run"].startswith("lora_qv") and r.get("classifier", "mlp") == classifier)  # fmt: skip
      if sweep:  # median over seeds (the paper's statistic) and every seed as a dot: a diverged seed shows
        head = "" if classifier == "mlp" else ", linear head"
        ax.plot([s[0] for s in sweep], [s[1] for s in sweep], style, label=f"LoRA q/v{head} (median)")
        for rank, _, scores in sweep:
          ax.plot([rank] * len(scores), scores, ".", color="gray")
    styles = {"full": "k--", "full_linear": "k:", "head": "r:", "lora_all_r8": "g-."}
    for r in rows:
      if r["run"] in styles:
        label = f"{r['run']} (median, {r['epochs']:g} epochs)"
        ax.axhline(r["median"], linestyle=styles[r["run"]][1:], color=styles[r["run"]][0], label=label)
      if r["run"] == "full":  # the paper's claim: LoRA within a point of full finetuning
        ax.axhspan(r["median"] - 1.0, r["median"], color="k", alpha=0.08, label="within 1 point of full")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("LoRA rank r")
    ax.set_ylabel(f"{args.task} dev score ({args.seeds} seeds)")
    ax.set_title("MiniLM-L6: LoRA vs full finetuning")
    ax.legend()

  path = common.write_results(args.name, dict(settings=vars(args), rows=rows), plot)
  print(f"wrote {path}, {path.with_suffix('.png')}")


def _rows_of(name: str, task: str) -> list[dict]:
  """The rows of results/<name>.json, an earlier run of this script on the same task (else a one-line SystemExit)."""
  path = common.RESULTS_DIR / f"{name}.json"
  if not path.is_file():
    raise SystemExit(f"--include: {path} does not exist (allowed: names of results/lora_*.json files)")
  earlier = json.loads(path.read_text())
  if "rows" not in earlier or earlier.get("settings", {}).get("task") != task:
    raise SystemExit(f"--include: {path} holds no paper_results rows for task {task!r}")
  return [{"epochs": earlier["settings"]["epochs"], **row} for row in earlier["rows"]]  # older files: no per-row epochs


if __name__ == "__main__":
  main()
