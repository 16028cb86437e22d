"""realm_jax.openqa end to end on a tiny encoder over a small corpus sample: results.json with exact match, the
frozen document embedder (no optimizer state, bitwise unchanged) beside a training query embedder, correct-span
masks of a real batch that decode to the answers, the tfds record formats on a fake, one-line config errors."""

import json
import os
import unicodedata

import jax
import numpy as np
import pytest

from core import checkpoint as checkpoint_lib
from core import config as config_lib
from core import train as train_lib
from core import tree as tree_lib
from tests.helpers import REPO, load_config
from tests.realm_jax import TINY_ENCODER

CONFIG = os.path.join(REPO, "configs/realm/openqa.py")
TINY = {
  **TINY_ENCODER,
  "realm.k": 5,
  "realm.refresh_every": 2,
  "realm.embed_batch": 64,
  "realm.span_hidden_size": 16,
  "data.max_questions": 10,  # 6 train, 4 dev; a corpus of their gold documents and a few others
  "data.max_docs": 40,
  "data.doc_len": 32,
  "eval.batch_size": 4,
  "train.batch_size": 2,
  "train.total_steps": 3,
  "train.log_every": 1,
  "train.eval_every": 3,
  "train.checkpoint_every": 3,
  "train.progress": False,
  "train.async_checkpoints": False,
  "optimizer.peak_lr": 1e-2,
  "optimizer.warmup_steps": 1,
}


def _config(**overrides):
  return load_config(CONFIG, None, {**TINY, **overrides})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  from realm_jax import openqa

  workdir = str(tmp_path_factory.mktemp("openqa"))
  return workdir, openqa.train_and_evaluate(_config(), workdir)


def test_the_run_writes_exact_match_and_predictions(finished):
  workdir, result = finished
  results = json.load(open(os.path.join(workdir, "results.json")))
  final = results["final_eval"]
  for name in ("exact_match", "top_k_match", "reader_oracle", "gold_recall_at_k"):
    assert 0.0 <= final[name] <= 1.0, name
  assert final["reader_oracle"] <= final["top_k_match"] + 1e-9  # a matching span implies a matching document text
  assert results["documents"] == 40 and results["dev_questions"] == 4 and results["train_questions"] == 6
  assert [set(p) for p in results["predictions"]] == [{"question", "prediction", "answers"}] * 4
  train = [h for h in result.history if h["split"] == "train"]
  assert [h["index_staleness"] for h in train] == [0.0, 1.0, 0.0]  # query copy refreshed at steps 0 and 2
  assert all(np.isfinite(h["loss"]) for h in train)


def test_a_finished_run_is_read_back_and_keeps_its_results(finished):
  from realm_jax import openqa

  workdir, _ = finished
  written = open(os.path.join(workdir, "results.json")).read()
  again = openqa.train_and_evaluate(_config(), workdir)  # `make demo` a second time
  assert again.resumed_from == 3 and again.history == []
  assert open(os.path.join(workdir, "results.json")).read() == written


def test_the_document_embedder_is_frozen_and_the_query_embedder_trains(finished):
  from realm_jax import openqa

  _, result = finished
  names = [name for name, _ in tree_lib.named_leaves(result.state.opt_state)]
  assert names and not [n for n in names if "doc_embedder" in n or "mlm_head" in n]
  assert any("query_embedder" in n for n in names) and any("span_scorer" in n for n in names)
  run = openqa.OpenQA(_config())
  initial = train_lib.init_params(train_lib.Task(run.init_params, None, None), 0)(None)
  final = jax.device_get(result.params)
  for a, b in zip(jax.tree.leaves(initial["doc_embedder"]), jax.tree.leaves(final["doc_embedder"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(initial["query_embedder"]),
                                                     jax.tree.leaves(final["query_embedder"]))]
  assert any(moved)


def _letters(text):
  """Lower-case letters and digits only, accents dropped: how the uncased WordPiece ids read back."""
  text = unicodedata.normalize("NFKD", text.lower())
  return "".join(ch for ch in text if ch.isalnum() and not unicodedata.combining(ch))


def test_correct_spans_of_a_real_batch_decode_to_the_answers(finished):
  from core.data import corpora as core_corpora
  from core.data import tokenizers
  from realm_jax import model, openqa, reader

  del finished  # after the run: the corpus and questions are cached in this process
  tokenizer = tokenizers.WordPieceTokenizer(core_corpora.bert_vocab_path())
  task, run, info = openqa.make_task(_config(**{"train.batch_size": 6}))
  run.index.refresh(train_lib.init_params(task, 0)(None), 0)
  batch = next(iter(task.train_data(0, 1)))
  questions = info["train_rows"]
  assert batch["allowed"].shape == batch["correct"].shape == (6, 5, len(run.starts_S))
  # The spans index the document part of join(x, z): join column query_len + i is document-row token i + 1.
  joined_ids = model.join(batch["query_ids"], batch["query_mask"], batch["candidate_ids"], batch["candidate_mask"])[0]
  np.testing.assert_array_equal(joined_ids[..., run.query_len :], batch["candidate_ids"][..., 1:])
  checked = 0
  for b, q in enumerate(batch["question"]):
    answers = [list(a) for a in reader.tokenize_answers(tokenizer, questions.examples[int(q)].answers)]
    wanted = {_letters(a) for a in questions.examples[int(q)].answers}
    for k in range(5):
      part = batch["candidate_ids"][b, k, 1:]
      for s, (i, j) in enumerate(zip(run.starts_S, run.ends_S)):
        ids = [int(t) for t in part[i : j + 1]]
        in_document = batch["candidate_mask"][b, k, 1:][i : j + 1].all() and tokenizer.sep_id not in ids
        assert batch["allowed"][b, k, s] == in_document
        assert batch["correct"][b, k, s] == (in_document and ids in answers)
        if batch["correct"][b, k, s]:
          assert _letters(tokenizer.decode(ids)) in wanted
          checked += 1
  assert checked > 0  # the small corpus holds the answers: some spans are correct


def _fake_realm_run(workdir, config, seed=0):
  """A checkpoint with the params layout of a realm_jax.pretrain run for `config`'s model (random numbers)."""
  from realm_jax import openqa

  shapes = jax.eval_shape(openqa.OpenQA(config).init_params, jax.random.key(0))
  rng = np.random.default_rng(seed)
  params = {name: jax.tree.map(lambda x: rng.normal(size=x.shape).astype(np.float32), shapes[name])
            for name in ("query_embedder", "doc_embedder", "reader")}
  checkpointer = checkpoint_lib.Checkpointer(str(workdir), async_save=False)
  checkpointer.save(7, {"params": params, "step": np.int32(7)})
  checkpointer.close()
  return params


def test_realm_from_loads_a_pretraining_checkpoint_and_refuses_other_shapes(tmp_path):
  from realm_jax import openqa

  config = _config()
  saved = _fake_realm_run(tmp_path / "pretrain", config)
  openqa.validate(_config(realm_from=str(tmp_path / "pretrain")))
  loaded = openqa.load_realm(str(tmp_path / "pretrain"), jax.eval_shape(openqa.OpenQA(config).init_params,
                                                                       jax.random.key(0)))
  for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(loaded)):
    np.testing.assert_array_equal(a, b)
  _fake_realm_run(tmp_path / "other", _config(**{"realm.proj_size": 8}))
  with pytest.raises(config_lib.ConfigError, match=r"^realm_from: .*projection/bias has shape \(8,\), the model "
                                                   r"expects \(16,\)") as error:
    openqa.validate(_config(realm_from=str(tmp_path / "other")))
  assert "\n" not in str(error.value)


@pytest.mark.parametrize(
  "overrides, message",
  [
    ({"realm.k": 40}, r"^realm\.k: 40 must be < the corpus of 40 documents"),
    ({"data.max_docs": 0, "realm.k": 200_000}, r"^realm\.k: 200000 must be < the corpus of 122121 documents"),
    ({"realm.refresh_every": 0}, r"^realm\.refresh_every: must be >= 1, got 0"),
    ({"data.dataset": "squad"}, r"^data\.dataset: unknown value 'squad' \(allowed: capitals, quiz, nq_open"),
    ({"data.dataset": "nq_open", "data.tfds_dir": "/no/tfds"}, r"^data\.tfds_dir: needs tfds data at '/no/tfds'"),
    ({"data.dev_fraction": 1.0}, r"^data\.dev_fraction: must be in \(0\.0, 1\.0\)"),
    ({"realm.max_span_width": 40}, r"^realm\.max_span_width: must be <= 31"),
    ({"realm_from": "/no/such/run"}, r"^realm_from: '/no/such/run' is neither a directory"),
    ({"init_from": "minilm", "realm_from": REPO}, r"^realm_from: a REALM pretraining run sets every encoder"),
  ],
)
def test_bad_configs_are_one_line_errors_before_any_work(overrides, message):
  from realm_jax import openqa

  with pytest.raises(config_lib.ConfigError, match=message) as error:
    openqa.validate(_config(**overrides))
  assert "\n" not in str(error.value)


def test_tfds_records_are_read_and_a_split_no_document_answers_is_refused(monkeypatch):
  from core import data as core_data
  from realm_jax import openqa_data

  records = {  # the tfds features: natural_questions_open {question, answer}, web_questions {question, answers, url}
    ("natural_questions_open", "train"): [{"question": "what is the capital of australia", "answer": ["Canberra"]},
                                          {"question": "who wrote zzyzx", "answer": ["Qwxzv Plorb"]}],
    ("natural_questions_open", "validation"): [{"question": "capital of portugal", "answer": ["Lisbon", "Lisboa"]}],
    ("web_questions", "train"): [{"question": "who wrote zzyzx?", "answers": ["Qwxzv Plorb"], "url": "u"}],
    ("web_questions", "test"): [{"question": "capital of portugal?", "answers": ["Lisbon"], "url": "u"}],
  }
  monkeypatch.setattr(core_data, "paper_dataset", lambda name, split, data_dir=None: records[(name, split)])
  qa = openqa_data.build("nq_open", max_docs=50)
  assert [q.question for q in qa.train] == ["what is the capital of australia"]  # the unanswerable one dropped
  assert qa.dev[0].answers == ("Lisbon", "Lisboa") and len(qa.documents) == 50
  for q in qa.train + qa.dev:  # the sample kept every document that holds an answer
    assert q.gold_doc_ids and all(openqa_data.contains_answer(qa.documents[i].text, q.answers)
                                  for i in q.gold_doc_ids)
  with pytest.raises(config_lib.ConfigError, match=r"^data\.dataset: no train question of 'web_questions' has an "
                                                   r"answer in any document") as error:
    openqa_data.build("web_questions", max_docs=50)
  assert "\n" not in str(error.value)


def test_the_demo_corpus_sample_holds_every_gold_document():
  # `make demo` runs openqa.DEMO_OVERRIDES on the default capitals questions: the sample must keep every gold
  # document of the questions (a 500-document sample cannot: they have 730).
  from realm_jax import openqa, openqa_data

  d = load_config(CONFIG, "size=minilm", openqa.DEMO_OVERRIDES).data
  sample = openqa_data.build(d.dataset, max_docs=d.max_docs, max_questions=d.max_questions, dev_fraction=d.dev_fraction)
  full = openqa_data.build(d.dataset, max_docs=0, max_questions=d.max_questions, dev_fraction=d.dev_fraction)
  assert len(sample.documents) == d.max_docs < len(full.documents)
  for small, whole in zip(sample.train + sample.dev, full.train + full.dev, strict=True):
    assert small.question == whole.question and small.gold_doc_ids
    kept = [sample.documents[i].text for i in small.gold_doc_ids]
    assert kept == [full.documents[i].text for i in whole.gold_doc_ids]
