"""ICT warm start (realm_jax.ict, realm_jax.ict_data): the in-batch loss against numpy, sentence removal, seeded
batches and exact resume, an end-to-end run whose checkpoint loads into Realm's shapes, a falling loss, one-line
config errors before any work."""

import os

import numpy as np
import pytest

from core import config as config_lib
from core import metrics as metrics_lib
from realm_jax import ict_data, masking, synthetic
from realm_jax.corpora import Document
from tests.helpers import REPO, load_config
from tests.realm_jax import TINY_ENCODER

CONFIG = os.path.join(REPO, "configs/realm/ict.py")
# The smallest shapes that show learning: 20 synthetic documents (4 held out), 2 batches of 8 per epoch.
TINY = {
  **TINY_ENCODER,
  "model.hidden_dropout_rate": 0.0,
  "model.attention_dropout_rate": 0.0,
  "data.num_entities": 20,  # profiles: one document per entity
  "data.query_len": 24,
  "data.doc_len": 80,
  "eval.num_queries": 4,
  "train.batch_size": 8,
  "train.total_steps": 50,
  "train.log_every": 1,
  "train.eval_every": 50,
  "train.checkpoint_every": 50,
  "train.progress": False,
  "model.initializer_range": 0.2,  # at 0.02 a 32-wide encoder's [CLS] barely depends on the input for ~50 steps
  "optimizer.peak_lr": 1e-2,
  "optimizer.warmup_steps": 5,
}
# Measured on this config (seed 0, 20 profiles): first-10 mean loss 2.07, last-10 mean 0.39 (ln 8 = 2.08).
LOSS_DROP = 1.0


@pytest.fixture(scope="module")
def tokenizer():
  from core.data import corpora, tokenizers

  return tokenizers.WordPieceTokenizer(corpora.bert_vocab_path())


@pytest.fixture(scope="module")
def documents():
  return synthetic.synthetic_knowledge(num_entities=10).documents


def _data(documents, tokenizer, seed=0, remove_probability=0.9):
  train, held = ict_data.split_documents(documents, num_eval=4)
  return ict_data.IctData(documents, train, held, tokenizer, 24, 80, remove_probability, seed)


def test_ict_loss_is_in_batch_softmax_cross_entropy():
  from realm_jax import ict

  rng = np.random.default_rng(0)
  query_BxD, context_BxD = (rng.normal(size=(6, 5)).astype(np.float32) for _ in range(2))
  loss, accuracy = ict.ict_loss(query_BxD, context_BxD)
  scores_BxB = query_BxD.astype(np.float64) @ context_BxD.T
  top_B = scores_BxB.max(axis=1)
  logsumexp_B = top_B + np.log(np.exp(scores_BxB - top_B[:, None]).sum(axis=1))
  np.testing.assert_allclose(float(loss), np.mean(logsumexp_B - np.diag(scores_BxB)), rtol=1e-5)
  assert float(accuracy) == np.mean(scores_BxB.argmax(axis=1) == np.arange(6))


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_the_pseudo_query_is_removed_with_probability_0_or_1(documents, tokenizer, p):
  for epoch in range(3):
    for i, doc in enumerate(documents):
      example = ict_data.ict_example(doc, i, ict_data.example_rng(0, 0, epoch, i), p)
      assert example.query == doc.text[slice(*example.sentence)] and example.query
      assert example.removed == (p == 1.0)
      if example.removed:  # the sentence is gone, every other sentence is still there
        assert example.query not in example.context
        others = [doc.text[a:b] for a, b in masking.sentence_bounds(doc.text) if (a, b) != example.sentence]
        assert example.context == " ".join(others)
      else:
        assert example.context == doc.text
  batch = _data(documents, tokenizer, remove_probability=p).train_batch(0, batch_size=8)
  assert (batch["removed"] == int(p)).all()


def test_removal_rate_is_the_configured_probability(documents):
  removed = [
    ict_data.ict_example(doc, i, ict_data.example_rng(0, 0, epoch, i), 0.9).removed
    for epoch in range(100)
    for i, doc in enumerate(documents)
  ]
  assert abs(np.mean(removed) - 0.9) < 4 * np.sqrt(0.9 * 0.1 / len(removed))  # 2,000 draws: within 0.027


def test_single_sentence_documents_are_skipped():
  docs = [Document(0, "a", "One sentence only."), Document(1, "b", "First one. Second one.")]
  docs += [Document(i, "c", "Three. Short. Ones.") for i in range(2, 6)]
  train, held = ict_data.split_documents(docs, num_eval=1)
  assert 0 not in train and 0 not in held and len(train) + len(held) == 5


def test_eval_corpus_keeps_the_held_out_documents_and_renumbers():
  docs = [Document(i, f"t{i}", f"Text {i}. More {i}.") for i in range(50)]
  held = np.array([3, 17, 41])
  corpus, targets = ict_data.eval_corpus(docs, held, max_corpus=10)
  assert len(corpus) == 10 and [d.doc_id for d in corpus] == list(range(10))
  assert [corpus[t].title for t in targets] == ["t3", "t17", "t41"]
  everything, targets = ict_data.eval_corpus(docs, held, max_corpus=0)
  assert len(everything) == 50 and list(targets) == [3, 17, 41]


def test_wikipedia_articles_are_cut_into_word_blocks():
  source = [{"title": "A", "text": " ".join(f"w{i}." for i in range(25))}, {"title": "B", "text": "x y. z"}]
  blocks = ict_data.wikipedia_blocks(source, block_words=10, max_docs=0)
  assert [(d.doc_id, d.title, len(d.text.split())) for d in blocks] == [(0, "A", 10), (1, "A", 10), (2, "A", 5),
                                                                         (3, "B", 3)]
  assert len(ict_data.wikipedia_blocks(source, block_words=10, max_docs=2)) == 2


def test_same_seed_same_batches_and_exact_resume(documents, tokenizer):
  def first(data, n):
    it = iter(data.dataset(batch_size=8))
    return [next(it) for _ in range(n)], it

  a, it_a = first(_data(documents, tokenizer, seed=3), 5)
  b, _ = first(_data(documents, tokenizer, seed=3), 5)
  c, _ = first(_data(documents, tokenizer, seed=4), 5)
  for x, y in zip(a, b):
    assert all(np.array_equal(x[k], y[k]) for k in x)
  assert not all(np.array_equal(x["query_ids"], z["query_ids"]) for x, z in zip(a, c))
  for batch in a:  # an epoch (2 batches) never repeats a document
    assert len(set(batch["doc_index"])) == 8
  state = it_a.get_state()
  resumed = iter(_data(documents, tokenizer, seed=3).dataset(batch_size=8))
  resumed.set_state(state)
  expected = _data(documents, tokenizer, seed=3).train_batch(5, batch_size=8)  # random access = streaming order
  for batch in (next(resumed), next(it_a)):
    assert all(np.array_equal(batch[k], expected[k]) for k in expected)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  from realm_jax import ict

  workdir = str(tmp_path_factory.mktemp("ict"))
  config = load_config(CONFIG, None, TINY)
  return config, workdir, ict.train_and_evaluate(config, workdir)


def test_run_checkpoints_a_retriever_with_realms_shapes(run):
  import jax

  from realm_jax import ict, model

  config, workdir, result = run
  assert ict.retriever_spec(workdir).steps == (50,)
  loaded = ict.load_retriever(workdir)
  realm = model.Realm(ict.realm_config(config))
  shapes = jax.eval_shape(lambda: model.init_params(realm, jax.random.key(0), 24, 80, 2))
  for name in ("query_embedder", "doc_embedder"):
    assert jax.tree.map(np.shape, loaded[name]) == jax.tree.map(lambda s: s.shape, shapes[name])
    jax.tree.map(np.testing.assert_array_equal, loaded[name], jax.device_get(result.params[name]))
  evals = [h for h in result.history if h["split"] == "eval"]
  assert evals[-1]["step"] == 50 and 0.0 <= evals[-1]["recall_at_1"] <= evals[-1]["recall_at_5"] <= 1.0


def test_retriever_spec_checks_shapes_in_one_line(run):
  from realm_jax import ict

  config, workdir, _ = run
  spec = ict.retriever_spec(workdir)
  spec.check(config.model, config.realm.proj_size, config.realm.pooling)
  with pytest.raises(config_lib.ConfigError, match=r"^retriever_from: .* model.hidden_size = 32, this run has 64$"):
    spec.check({**config.model.to_dict(), "hidden_size": 64}, 16)
  with pytest.raises(config_lib.ConfigError, match=r"realm.proj_size = 16, this run has 128$"):
    spec.check(config.model, 128)
  with pytest.raises(config_lib.ConfigError, match=r"realm.pooling = 'cls', this run has 'mean'$"):
    spec.check(config.model, 16, "mean")
  with pytest.raises(config_lib.ConfigError, match=r"^workdir: .* holds no config.json"):
    ict.load_retriever(os.path.join(workdir, "nope"))


def test_loss_falls_over_50_steps(run):
  _, workdir, _ = run
  losses = [h["loss"] for h in metrics_lib.read_jsonl(workdir, "train")]
  assert len(losses) == 50 and abs(losses[0] - np.log(8)) < 0.3  # near uniform over the 8 contexts at init
  assert np.mean(losses[:10]) - np.mean(losses[-10:]) > LOSS_DROP


def test_minilm_loads_into_the_encoder_shape_and_a_mismatch_is_one_line():
  import jax

  from realm_jax import ict, model

  config = load_config(CONFIG, "size=minilm")
  cfg = ict.realm_config(config)
  encoder = ict.pretrained_encoder(config, cfg.encoder)
  ids = jax.ShapeDtypeStruct((1, 4), np.int32)
  shapes = jax.eval_shape(lambda x: model.Embedder(cfg).init(jax.random.key(0), x, x)["params"]["encoder"], ids)
  assert jax.tree.map(np.shape, encoder) == jax.tree.map(lambda s: s.shape, shapes)
  tiny = load_config(CONFIG, None, {"init_from": "minilm"})
  with pytest.raises(config_lib.ConfigError, match=r"^init_from: '.*' has hidden_size 384, model.hidden_size is 128$"):
    ict.pretrained_encoder(tiny, ict.realm_config(tiny).encoder)


@pytest.mark.parametrize(
  "overrides,message",
  [
    ({"train.batch_size": 1}, "train.batch_size: 1 (micro-batch 1) must be >= 2: the in-batch softmax needs other"),
    ({"ict.remove_probability": -0.1}, "ict.remove_probability: must be in [0.0, 1.0], got -0.1"),
    ({"ict.remove_probability": 1.5}, "ict.remove_probability: must be in [0.0, 1.0], got 1.5"),
    ({"data.corpus": "nope"}, "data.corpus: unknown value 'nope' (allowed: synthetic, wordnet_wikipedia, wikipedia)"),
    ({"init_from": "nope"}, "init_from: unknown value 'nope' (allowed: '', 'minilm' or a HuggingFace BERT directory)"),
    ({"data.num_entities": 200_000}, "data.num_entities: must be <= 100000, got 200000"),
  ],
)
def test_bad_configs_are_one_line_errors_before_any_work(tmp_path, overrides, message):
  from realm_jax import ict

  workdir = tmp_path / "run"
  with pytest.raises(config_lib.ConfigError) as error:
    ict.train_and_evaluate(load_config(CONFIG, None, overrides), str(workdir))
  assert str(error.value).startswith(message) and "\n" not in str(error.value)
  assert not workdir.exists()
