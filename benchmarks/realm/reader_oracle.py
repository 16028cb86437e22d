"""Can REALM's reader read at this size? The knowledge-augmented encoder trained with the gold document handed to it.

REALM (arXiv 2002.08909) Eq. 3-4: p(y | z, x) from the knowledge-augmented encoder over join(x, z). Pretraining
(Eq. 5) can only beat chance on held-out entities if, given the right document, the reader copies the masked value
out of it; this pilot isolates that ability from retrieval. Each run trains the reader alone (the embedders are not
used) on the synthetic corpus of `configs/realm/pretrain.py` with p(z|x) fixed:

  gold       the gold profile is the only candidate: loss −log p(y | x, z_gold) (perfect retrieval);
  null_gold  ∅ and the gold profile, p(z|x) from the initial embedders (not trained here): loss
             −log Σ_z p(z|x) p(y|x,z) over the two (Eq. 5 with perfect recall@1: the gold candidate's share of the
             reader's gradient is its posterior, so reading starts later than with the gold profile alone).

`--save_reader DIR` (one mode) keeps the trained reader for `realm_jax.pretrain`'s `reader_from`
(realm_jax/warm_start.py: a reader that reads from step 0, as the paper's BERT MLM head does).

Logged every `--eval_every` steps: held-out accuracy (entities with no training query) with the gold profile and
with ∅ alone, and the same on 256 training queries (memorisation shows as train accuracy with ∅ rising). Writes
results/<name>.json + .png. The runs behind realm_jax/README.md (about 9 and 5 minutes a mode on 2 CPU cores):

  python -m benchmarks.realm.reader_oracle --size minilm --entities 1000 --modes gold,null_gold \
      --name realm_reader_oracle_minilm
  python -m benchmarks.realm.reader_oracle --size tiny --entities 1000 --name realm_reader_oracle_tiny
"""

from __future__ import annotations

import argparse
import functools
import os
import time

import jax
import numpy as np
import optax

from benchmarks.core import common

MODES = ("gold", "null_gold")
CONFIG = common.RESULTS_DIR.parent / "configs" / "realm" / "pretrain.py"


def with_candidates(batch: dict[str, np.ndarray], rows, mode: str) -> dict[str, np.ndarray]:
  """The batch with its candidates fixed: [gold] or [∅, gold] (`data.NULL_DOC` is ∅)."""
  from realm_jax import data as data_lib  # pylint: disable=g-import-not-at-top

  gold_B = batch["gold_docs"][:, 0]
  docs_BxK = gold_B[:, None] if mode == "gold" else np.stack([np.full_like(gold_B, data_lib.NULL_DOC), gold_B], 1)
  ids, mask = rows.rows(docs_BxK)
  ones_B = np.ones(len(gold_B), np.float32)
  return {**batch, "candidate_ids": ids, "candidate_mask": mask, "candidate_valid": np.ones(docs_BxK.shape, np.float32),
          "gold_hit": ones_B, "gold_valid": ones_B}  # fmt: skip


def train_reader(args, mode: str) -> dict:
  from core import config as config_lib  # pylint: disable=g-import-not-at-top
  from core import optim  # pylint: disable=g-import-not-at-top
  from core.data import corpora, tokenizers  # pylint: disable=g-import-not-at-top
  from realm_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from realm_jax import pretrain, synthetic  # pylint: disable=g-import-not-at-top

  overrides = {"data.num_entities": args.entities, "train.batch_size": args.batch, "train.total_steps": args.steps,
               "optimizer.warmup_steps": max(1, args.steps // 10)}  # fmt: skip
  if args.lr:
    overrides["optimizer.peak_lr"] = args.lr
  config = config_lib.load_config_file(str(CONFIG), f"size={args.size}", overrides)
  pretrain.validate(config)
  tokenizer = tokenizers.WordPieceTokenizer(corpora.bert_vocab_path())
  documents, train_q, heldout_q = pretrain.build_data(config, tokenizer)
  rows = data_lib.document_rows(tokenizer, documents, config.data.doc_len)
  run = pretrain.Pretraining(config, rows)
  params = jax.device_get(jax.jit(run.init_params)(jax.random.fold_in(jax.random.key(config.seed), 0)))
  params = {**params, **(pretrain.load_initial_params(config, params) or {})}
  tx, _ = optim.make_optimizer(config.optimizer, args.steps)
  reader, rest = params["reader"], {k: v for k, v in params.items() if k != "reader"}
  opt_state = tx.init(reader)

  def loss_fn(reader, batch, key):
    return run.loss({**rest, "reader": reader}, batch, key)

  @jax.jit
  def step(reader, opt_state, batch, key):
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(reader, batch, key)
    updates, opt_state = tx.update(grads, opt_state, reader)
    return optax.apply_updates(reader, updates), opt_state, loss

  @functools.partial(jax.jit, static_argnames="null")
  def accuracy(reader, batch, null: bool):
    params = {**rest, "reader": reader}
    if null:
      return run.null_accuracy(params, batch, jax.random.key(0))
    return run.loss(params, batch, jax.random.key(0), deterministic=True)[1]["accuracy"]

  def evaluate(reader, queries, count):
    gold, null, n = 0.0, 0.0, 0
    for s in range(0, min(count, queries.size), args.batch):
      batch = queries.batch(np.arange(s, min(s + args.batch, queries.size, count)))
      rows_b = len(batch["query_ids"])
      gold += float(accuracy(reader, with_candidates(batch, rows, "gold"), False)) * rows_b
      null += float(accuracy(reader, with_candidates(batch, rows, "null_gold"), True)) * rows_b
      n += rows_b
    return gold / n, null / n

  rng = np.random.default_rng(config.seed)
  order, cursor, curve, started = rng.permutation(train_q.size), 0, [], time.perf_counter()
  train_subset = pretrain._take(train_q, rng.permutation(train_q.size)[:256])  # pylint: disable=protected-access
  for i in range(1, args.steps + 1):
    if cursor + args.batch > len(order):
      order, cursor = rng.permutation(train_q.size), 0
    batch = with_candidates(train_q.batch(order[cursor: cursor + args.batch]), rows, mode)
    cursor += args.batch
    reader, opt_state, loss = step(reader, opt_state, batch, jax.random.fold_in(jax.random.key(config.seed), i))
    if i % args.eval_every == 0 or i == args.steps:
      heldout, heldout_null = evaluate(reader, heldout_q, args.eval_queries)
      train, train_null = evaluate(reader, train_subset, 256)
      point = dict(step=i, loss=float(loss), heldout_gold=heldout, heldout_null=heldout_null, train_gold=train,
                   train_null=train_null, seconds=time.perf_counter() - started)  # fmt: skip
      curve.append(point)
      print(f"{mode} step {i}: " + ", ".join(f"{k} {v:.3f}" for k, v in point.items() if k != "step"), flush=True)
  chance = 1.0 / max(len(a.values) for a in synthetic.ATTRIBUTES.values())  # SyntheticKnowledge.chance (all 1/8)
  if args.save_reader:
    from realm_jax import warm_start  # pylint: disable=g-import-not-at-top

    warm_start.save_reader(args.save_reader, reader, dict(mode=mode, settings=vars(args), final=curve[-1],
                                                          model=config.model.to_dict()))  # fmt: skip
  return dict(mode=mode, final=curve[-1], curve=curve, chance=chance, train_queries=train_q.size,
              heldout_queries=heldout_q.size, peak_lr=config.optimizer.peak_lr)  # fmt: skip


def _plot(runs):
  def plot(ax):
    for run in runs:
      steps = [p["step"] for p in run["curve"]]
      ax.plot(steps, [p["heldout_gold"] for p in run["curve"]], marker="o", label=f"{run['mode']}: held-out, gold")
      ax.plot(steps, [p["train_null"] for p in run["curve"]], ls="--", label=f"{run['mode']}: train, ∅ alone")
    ax.axhline(runs[0]["chance"], color="grey", lw=0.8, label="chance")
    ax.set_xlabel("step")
    ax.set_ylabel("masked-attribute accuracy")
    ax.legend(fontsize=7)

  return plot


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", default="tiny", help="configs/realm/common.py SIZES (tiny: from scratch; minilm)")
  parser.add_argument("--entities", type=int, default=1000, help="synthetic entities (a fifth held out)")
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--lr", type=float, default=0.0, help="peak LR (0 = the config's)")
  parser.add_argument("--modes", default="gold", help=f"comma-separated of {', '.join(MODES)}")
  parser.add_argument("--eval_every", type=int, default=50)
  parser.add_argument("--eval_queries", type=int, default=512)
  parser.add_argument("--save_reader", default="", help="a directory for the trained reader (one mode only)")
  parser.add_argument("--name", default="realm_reader_oracle")
  parser.add_argument("--results_dir", default=None)
  args = parser.parse_args()
  modes = args.modes.split(",")
  if bad := [m for m in modes if m not in MODES]:
    parser.error(f"--modes: unknown value {bad[0]!r} (allowed: {', '.join(MODES)})")
  if args.save_reader and os.path.exists(os.path.join(args.save_reader, "reader")):
    parser.error(f"--save_reader: {args.save_reader} already holds a reader (a saved reader is never overwritten)")
  if args.save_reader and len(modes) != 1:
    parser.error(f"--save_reader: saves one reader; --modes names {len(modes)} (allowed: one of {', '.join(MODES)})")
  runs = []
  for mode in modes:  # the file is rewritten after each mode: a stopped run keeps the modes it finished
    runs.append(train_reader(args, mode))
    path = common.write_results(args.name, dict(settings=vars(args), runs=runs), _plot(runs), args.results_dir)
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
  main()
