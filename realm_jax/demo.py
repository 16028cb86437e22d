"""`make demo` for REALM: ICT warm start and pretraining with an in-loop index on synthetic knowledge, then open QA.

Guu et al. 2020 (arXiv 2002.08909) §3.3-3.4 and §4, through the entry points' code:
1. ICT (`realm_jax.ict`) warms up the two embedders on the synthetic corpus (profiles of made-up entities);
2. REALM pretraining (`realm_jax.pretrain`) from that retriever: every batch's masked queries come with the top-k
   profiles of an index refreshed inside the loop; prints the retrieval signals the run logged (gold recall@k,
   retrieval utility, the refresh's cost) and one held-out query with what it retrieved;
3. open-domain QA finetuning (`realm_jax.openqa`) on the quiz's capital questions over WordNet + Wikipedia documents
   with the bundled MiniLM, printing dev exact match and a few answers.
The step counts are the demo's (minutes on 2 CPU cores); the configs' docstrings give the full runs and results.

  python -m realm_jax.demo --workdir=workdirs/realm_demo [--ict_steps 100] [--pretrain_steps 20] [--qa_steps 30]
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import flags

from core import metrics as metrics_lib
from core.config import load_config_file
from core.main import run_app

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("workdir", "workdirs/realm_demo", "Where the three runs go (resumed).")
flags.DEFINE_integer("ict_steps", 100, "ICT warm-start steps.")
flags.DEFINE_integer("pretrain_steps", 20, "REALM pretraining steps.")
flags.DEFINE_integer("qa_steps", 30, "Open-QA finetuning steps.")
flags.DEFINE_bool("tiny", False, "Tiny encoders everywhere and a small QA corpus (the end-to-end test's setting).")
FLAGS = flags.FLAGS

TINY = {"model.hidden_size": 32, "model.num_layers": 1, "model.num_heads": 2, "model.intermediate_size": 64}


def _config(name: str, arg: str | None, overrides: dict) -> object:
  return load_config_file(os.path.join(_REPO, "configs/realm", name), arg, overrides)


def _last(workdir: str, split: str) -> dict:
  return metrics_lib.read_jsonl(workdir, split)[-1]


def main(_) -> None:
  from realm_jax import ict, pretrain  # pylint: disable=g-import-not-at-top

  tiny = TINY if FLAGS.tiny else {}
  quiet = {"train.progress": False}
  ict_dir = os.path.join(FLAGS.workdir, "ict")
  print(f"1. ICT warm start of the two embedders on the synthetic profiles ({FLAGS.ict_steps} steps)", flush=True)
  ict.train_and_evaluate(_config("ict.py", None, {**tiny, **quiet, "train.total_steps": FLAGS.ict_steps}), ict_dir)
  ict_eval = _last(ict_dir, "eval")
  print(f"   held-out pseudo-queries: recall@1 {ict_eval['recall_at_1']:.2f}, recall@5 {ict_eval['recall_at_5']:.2f} "
        f"(chance@5 {ict_eval['chance_at_5']:.2f})")

  realm_dir = os.path.join(FLAGS.workdir, "pretrain")
  steps = FLAGS.pretrain_steps
  config = _config("pretrain.py", None, {**tiny, **quiet, "retriever_from": ict_dir, "train.total_steps": steps,
                                          "train.eval_every": steps, "train.log_every": min(10, steps),
                                          "realm.refresh_every": 10})
  print(f"2. REALM pretraining from the ICT retriever ({steps} steps, index refreshed every "
        f"{config.realm.refresh_every})", flush=True)
  pretrain.train_and_evaluate(config, realm_dir)
  with open(os.path.join(realm_dir, "results.json")) as f:
    results = json.load(f)
  final, train = results["final_eval"], _last(realm_dir, "train")
  print(f"   held-out queries (entities seen only in documents): gold profile in the top {config.realm.k} "
        f"{100 * final['gold_recall_at_k']:.0f}%, accuracy {100 * final['accuracy']:.1f}% with retrieval vs "
        f"{100 * final['null_accuracy']:.1f}% with the null document alone (chance {100 / 8:.1f}%: "
        "every attribute has 8 values, realm_jax.synthetic.ATTRIBUTES)")
  print(f"   last train window: log p(y|x) {train['log_p_y_given_x']:.3f}, retrieval utility "
        f"{train['retrieval_utility']:+.4f} nats/token, index staleness {train['index_staleness']:.0f} steps; "
        f"{results['index_refreshes']} refreshes took {100 * results['refresh_share']:.1f}% of the run's wall time")
  _show_retrieval(config)

  from realm_jax import openqa  # pylint: disable=g-import-not-at-top

  qa_dir = os.path.join(FLAGS.workdir, "openqa")
  print(f"3. Open-domain QA on the quiz's capitals over WordNet + Wikipedia ({FLAGS.qa_steps} steps)", flush=True)
  arg = "size=tiny" if FLAGS.tiny else "size=minilm"
  qa_steps = {name: FLAGS.qa_steps for name in ("train.total_steps", "train.eval_every", "train.checkpoint_every")}
  qa_config = _config("openqa.py", arg, {**tiny, **quiet, **openqa.DEMO_OVERRIDES, **qa_steps})
  openqa.train_and_evaluate(qa_config, qa_dir)
  with open(os.path.join(qa_dir, "results.json")) as f:
    qa = json.load(f)
  print(f"   dev exact match {100 * qa['final_eval']['exact_match']:.1f}% "
        f"(an answer in the top {qa_config.realm.k}: {100 * qa['final_eval']['top_k_match']:.1f}%)")
  for row in qa.get("predictions", [])[:5]:
    print(f"   Q: {row['question']}  ->  {row['prediction']!r}  (gold: {row['answers'][0]!r})")


def _show_retrieval(config) -> None:
  """One held-out query, its masked answer and its gold document."""
  from core.data import corpora, tokenizers  # pylint: disable=g-import-not-at-top
  from realm_jax import pretrain  # pylint: disable=g-import-not-at-top

  tokenizer = tokenizers.WordPieceTokenizer(corpora.bert_vocab_path())
  documents, _, heldout = pretrain.build_data(config, tokenizer)
  row = heldout.batch(np.arange(1))
  answer = tokenizer.decode(row["mask_labels"][0][row["mask_weights"][0] > 0])
  gold = documents[int(row["gold_docs"][0][0])].title
  print(f"   e.g. {tokenizer.decode(row['query_ids'][0], skip_special_tokens=False).split(' [SEP]')[0][6:]!r}"
        f" -> {answer!r} (gold document: {gold})")


if __name__ == "__main__":
  run_app(main)
