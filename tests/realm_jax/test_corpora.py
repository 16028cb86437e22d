"""Knowledge corpora, quiz QA, FanOutQA normalisation cases (realm_jax.corpora) and synthetic knowledge
(realm_jax.synthetic)."""

import collections

import numpy as np
import pytest

from core.finetune import metrics
from realm_jax import corpora, masking, synthetic


@pytest.fixture(scope="module")
def corpus():
  return corpora.knowledge_corpus()


def test_corpus_ids_stable_unique_and_wordnet_docs_name_their_lemma(corpus):
  assert [d.doc_id for d in corpus] == list(range(len(corpus)))
  assert len(corpus) == 117_659 + 4_462
  again = corpora.knowledge_corpus()
  assert again[5000] == corpus[5000] and again[-1] == corpus[-1]
  for doc in corpus[:117_659:997]:  # WordNet part
    assert doc.text.startswith(doc.title) and doc.title in doc.text.partition(": ")[0]
  assert all(len(d.text.split()) <= 100 for d in corpus[117_659:])  # Wikipedia 100-word blocks
  sample = corpora.knowledge_corpus(max_docs=50, seed=3)
  assert [d.doc_id for d in sample] == list(range(50))
  assert sample == corpora.knowledge_corpus(max_docs=50, seed=3) != corpora.knowledge_corpus(max_docs=50, seed=4)
  assert {(d.title, d.text) for d in sample} <= {(d.title, d.text) for d in corpus}
  with pytest.raises(ValueError, match="unknown knowledge source"):
    corpora.knowledge_corpus(("encyclopedia",))


def test_capital_qa_gold_documents(corpus):
  qa = corpora.capital_qa(corpus)
  assert len(qa) == 284 and qa[0].question == "What is the capital of Algeria?"
  for example in qa:
    for doc_id in example.gold_doc_ids:
      text = corpus[doc_id].text.lower()
      assert any(a.lower().replace("-", " ") in text.replace("-", " ") for a in example.answers)
  # Measured: 246 / 284 = 0.866 of the questions have an answer-bearing document (WordNet alone: 0.859).
  coverage = np.mean([bool(e.gold_doc_ids) for e in qa])
  assert coverage >= 0.8, coverage
  subset = [d for d in corpus if "Algeria" in d.text or "Benin" in d.text]  # doc ids kept from the full corpus
  kept = corpora.capital_qa(subset, require_gold=True)
  assert {e.question for e in kept} >= {"What is the capital of Algeria?", "What is the capital of Benin?"}
  assert all(e.gold_doc_ids for e in kept) and len(kept) < len(qa)
  benin = "What is the capital of Benin?"
  gold = {e.question: e.gold_doc_ids for e in qa}
  assert next(e for e in kept if e.question == benin).gold_doc_ids == gold[benin]
  montgomery = next(e for e in qa if e.question == "What is the capital of Alabama?")
  assert any(corpus[i].title == "Montgomery" for i in montgomery.gold_doc_ids)
  with pytest.raises(ValueError, match="no question template"):
    corpora.capital_qa(corpus[:10], categories=("bard:work",))


def test_fanoutqa_answer_cases_match_under_normalisation():
  cases = corpora.fanoutqa_answer_cases()
  assert len(cases) > 1000 and len({gold for _, gold in cases}) == len(cases)
  for variants, gold in cases:
    for prediction in variants:
      assert metrics.exact_match(prediction, [gold]) == 1.0, (prediction, gold)


@pytest.fixture(scope="module")
def knowledge():
  return synthetic.synthetic_knowledge(num_entities=40, heldout_fraction=0.25, seed=0)


def test_synthetic_heldout_entities_only_in_documents(knowledge):
  assert len(knowledge.heldout_entities) == 10
  train_text = " ".join(q.text for q in knowledge.train_queries)
  for name in knowledge.heldout_entities:
    assert name not in train_text
    assert any(name in d.text for d in knowledge.documents)
  assert {q.entity for q in knowledge.heldout_queries} == set(knowledge.heldout_entities)
  assert len(knowledge.train_queries) == 30 * 4 and len(knowledge.heldout_queries) == 10 * 4


def test_synthetic_queries_point_at_their_documents(knowledge):
  docs = knowledge.documents
  assert [d.doc_id for d in docs] == list(range(80))
  for q in knowledge.train_queries + knowledge.heldout_queries:
    assert q.text[q.answer_span[0] : q.answer_span[1]] == q.answer == knowledge.entities[q.entity][q.attribute]
    assert q.answer in docs[q.gold_doc_id].text and q.entity in docs[q.gold_doc_id].text
    assert q.text in docs[q.source_doc_id].text and q.source_doc_id != q.gold_doc_id  # the excluded origin
    assert q.answer_span in masking.salient_spans(q.text, single_word_names=True) or q.answer.islower()


def test_synthetic_chance_level(knowledge):
  big = synthetic.synthetic_knowledge(num_entities=400, seed=1)
  for attribute, spec in synthetic.ATTRIBUTES.items():
    assert big.chance[attribute] == knowledge.chance[attribute] == 1 / len(spec.values) == 1 / 8
    # Without retrieval the best a model can do on held-out entities is the training majority value: ~chance.
    train = collections.Counter(q.answer for q in big.train_queries if q.attribute == attribute)
    held = [q.answer for q in big.heldout_queries if q.attribute == attribute]
    majority = train.most_common(1)[0][0]
    assert np.mean([a == majority for a in held]) <= big.chance[attribute] + 0.1
    assert set(train) == set(spec.values)


@pytest.mark.parametrize("num_entities", [225, 226, 2000])
def test_synthetic_names_scale_past_the_two_syllable_first_names(num_entities):
  # 30² two-syllable first names: a population over 225 takes three-syllable ones too (it used to loop forever).
  kb = synthetic.synthetic_knowledge(num_entities=num_entities, seed=3)
  assert len(kb.entities) == num_entities and len(kb.documents) == 2 * num_entities
  assert len({name.split()[0] for name in kb.entities}) == num_entities  # first names distinct too
  assert len(kb.train_queries) + len(kb.heldout_queries) == 4 * num_entities


def test_synthetic_deterministic_per_seed(knowledge):
  assert synthetic.synthetic_knowledge(num_entities=40, heldout_fraction=0.25, seed=0) == knowledge
  other = synthetic.synthetic_knowledge(num_entities=40, heldout_fraction=0.25, seed=1)
  assert other.documents != knowledge.documents
  with pytest.raises(ValueError, match="held out"):
    synthetic.synthetic_knowledge(num_entities=4, heldout_fraction=0.0)
