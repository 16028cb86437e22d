"""Tests for the bundled corpus loaders and their parsers (wiki markup, quiz patterns, pickle guard)."""

from __future__ import annotations

import collections
import hashlib
import io
import pickle
import zlib

import pytest

from core.data import corpora, quiz, wikitext


def test_minilm_files_and_vocab_checksum():
  d = corpora.minilm_dir()
  assert (d / "model.safetensors").stat().st_size == 90_868_376
  vocab = corpora.bert_vocab_path()
  digest = hashlib.sha256(vocab.read_bytes()).hexdigest()
  assert digest.startswith("07eced37") and digest.endswith("38a3")
  assert len(vocab.read_text(encoding="utf-8").splitlines()) == 30_522


def test_wordnet_has_all_synsets():
  glosses = corpora.wordnet_glosses()
  assert len(glosses) == 117_659
  counts = collections.Counter(pos for _, _, pos in glosses)
  assert counts == {"n": 82_115, "v": 13_767, "s": 10_693, "a": 7_463, "r": 3_621}
  assert glosses[0] == (
    ("entity",),
    "that which is perceived or known or inferred to have its own distinct existence (living or nonliving)",
    "n",
  )
  by_lemma = collections.defaultdict(list)
  for lemmas, gloss, pos in glosses:
    for lemma in lemmas:
      by_lemma[lemma].append((gloss, pos))
  assert any("capital and largest city of France" in g for g, _ in by_lemma["Paris"])
  assert "able" in by_lemma and "able(a)" not in by_lemma  # adjective markers stripped
  assert "physical entity" in by_lemma  # underscores become spaces
  assert all(gloss and lemmas for lemmas, gloss, _ in glosses[:1000])


def test_wordnet_line_parser():
  line = "00001740 00 a 01 able 0 005 = 05200169 n 0000 | (usually followed by `to') having the necessary means  \n"
  assert corpora.parse_wordnet_data_line(line) == (
    ("able",),
    "(usually followed by `to') having the necessary means",
    "a",
  )


def test_wikipedia_articles_are_plain_text():
  articles = corpora.wikipedia_articles()
  assert len(articles) == 106
  titles = [t for t, _ in articles]
  assert len(set(titles)) == 106 and {"Anarchism", "Autism", "Albedo", "Algeria"} <= set(titles)
  text = dict(articles)
  assert text["Anarchism"].startswith("Anarchism is a political philosophy that advocates self-governed")
  assert text["Albedo"].startswith("Albedo or reflection coefficient, derived from Latin albedo")
  for title, body in articles:
    for leftover in ("{{", "}}", "[[", "]]", "<ref", "&lt;", "'''", "{|", "thumb|", "Category:"):
      assert leftover not in body, (title, leftover)
  total_words = sum(len(body.split()) for _, body in articles)
  assert 400_000 < total_words < 500_000


def test_wikipedia_passages_are_100_word_chunks():
  articles = dict(corpora.wikipedia_articles())
  passages = corpora.wikipedia_passages()
  assert len(passages) > 4_000
  by_title = collections.defaultdict(list)
  for title, passage in passages:
    by_title[title].append(passage)
  for title, chunks in by_title.items():
    assert all(len(c.split()) == 100 for c in chunks[:-1])
    assert 1 <= len(chunks[-1].split()) <= 100
    assert " ".join(chunks).split() == articles[title].split()
  assert all(len(p.split()) <= 50 for _, p in corpora.wikipedia_passages(words=50))


def test_strip_markup_on_handwritten_wikitext():
  markup = (
    "{{Infobox country|name={{lang|fr|France}}|capital=[[Paris]]}}\n"
    "'''France''' is a [[country]] in [[Western Europe|western Europe]].<ref name=\"a\">Cite "
    "{{cite web|url=http://x}}</ref> Its capital is [[Paris]]<ref name=\"a\"/>.<!-- hidden -->\n"
    "[[File:Flag.svg|thumb|The [[flag]] of France]]\n"
    "{| class=\"wikitable\"\n|-\n| a || b\n|}\n"
    "== History ==\n"
    "* First item with [http://example.org an external link].\n"
    "Tom &amp; Jerry<br/>end.\n"
    "== References ==\n"
    "{{reflist}}\n[[Category:Countries]]\n"
  )
  assert wikitext.strip_markup(markup) == (
    "France is a country in western Europe. Its capital is Paris.\n"
    "History\n"
    "First item with an external link.\n"
    "Tom & Jerry end."
  )


def test_quiz_pattern_expansion():
  assert quiz.expand("{G{eorge} }Washington") == ["George Washington", "G Washington", "Washington"]
  assert quiz.expand("{I }[injure|thwart]") == ["I injure", "I thwart", "injure", "thwart"]
  assert quiz.expand("M[iddle{-}Earth|E]") == ["Middle-Earth", "MiddleEarth", "ME"]
  assert quiz.expand("1801-{{18}0}9")[0] == "1801-1809"
  assert quiz.expand("") == []
  assert quiz.expand("[Squares|n[**|^]2} base 8")[0] == "Squares"  # unbalanced in the data
  assert quiz.split_fields(r"Give me some music\: music:next") == [r"Give me some music\: music", "next"]
  assert quiz.logical_lines("a:\\\nb\nc:d\n") == ["a:b", "c:d"]


def test_quiz_pairs():
  pairs = corpora.quiz_pairs()
  assert len(pairs) == 2_356
  assert ("africa:capital", "Algeria", "Algiers") in pairs
  assert ("state:capital", "Alabama", "Montgomery") in pairs
  assert ("pres:successor", "John Adams", "Thomas Jefferson") in pairs
  for category in (
    "africa:capital",
    "america:capital",
    "asia:capital",
    "europe:capital",
    "state:capital",
    "province:capital",
  ):
    assert sum(1 for c, _, _ in pairs if c == category) >= 13
  for category, question, answer in pairs:
    assert question and answer
    if not category.startswith("ed:"):  # ed commands contain regex brackets
      assert not any(ch in question + answer for ch in "{}[]|"), (question, answer)
  records = corpora.quiz_records()
  washington = next(r for r in records if r.subject == "pres" and r.answer == "John Adams" and r.answer_field == "vice")
  assert washington.question == "George Washington"
  assert "Washington" in washington.question_alternatives


def test_fanoutqa_dev():
  questions = corpora.fanoutqa_dev()
  assert len(questions) == 310
  first = questions[0]
  assert {"id", "question", "answer", "decomposition"} <= set(first)
  sub = first["decomposition"][0]
  assert {"question", "answer", "evidence"} <= set(sub) and "title" in sub["evidence"]


def test_polarity_sentences():
  sentences = corpora.polarity_sentences()
  assert len(sentences) == 200
  assert collections.Counter(label for _, label in sentences) == {0: 100, 1: 100}
  assert sentences[0] == ("simplistic , silly and tedious .", 0)
  assert any("—" in text for text, _ in sentences)  # cp1252 em dash decoded


def test_newsgroups():
  posts = corpora.newsgroups()
  assert len(posts) == 200
  assert collections.Counter(label for _, label in posts) == {"alt.atheism": 100, "sci.space": 100}
  assert posts[0][0].startswith("Newsgroups: alt.atheism")
  assert all(text.startswith("Newsgroups: ") or "Newsgroups:" in text for text, _ in posts)


class _Evil:
  def __reduce__(self):
    import os  # pylint: disable=g-import-not-at-top

    return (os.system, ("echo pwned",))


def test_newsgroups_unpickler_rejects_other_globals():
  payload = pickle.dumps({"data": [_Evil()]}, protocol=2)
  unpickler = corpora._NewsgroupsUnpickler  # pylint: disable=protected-access
  with pytest.raises(pickle.UnpicklingError, match="not allowed"):
    unpickler(io.BytesIO(payload), encoding="latin-1").load()
  # The real file goes through the same class.
  raw = zlib.decompress((corpora.registry.fetch("gensim_test_data") / "mini_newsgroup").read_bytes())
  assert set(unpickler(io.BytesIO(raw), encoding="latin-1").load()) == {
    "DESCR",
    "data",
    "target",
    "target_names",
    "filenames",
  }


def test_lee_corpus():
  background, test = corpora.lee_corpus(), corpora.lee_corpus(background=False)
  assert len(background) == 300 and len(test) == 50
  assert test[0].startswith("The national executive of the strife-torn Democrats")
  assert any("£" in doc for doc in test)
