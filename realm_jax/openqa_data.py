"""Open-domain QA data for REALM finetuning: questions, the knowledge corpus they are asked over, the reader's spans.

REALM, arXiv 2002.08909 §4 (open-QA finetuning on NaturalQuestions-Open and WebQuestions, exact match over the top-k
retrieved documents) following ORQA, arXiv 1906.00300 §4, §6 (weak supervision: a span is correct when its text
equals an answer string; no gold document is given); US 11,003,865: "after pretraining, the model is finetuned with
supervision, e.g. open-domain QA".

Datasets (`DATASETS`): `capitals` (the quiz files' capital questions over WordNet + the Wikipedia excerpt, a seeded
train/dev split), `quiz` (the other single-answer categories of `corpora.QUESTION_TEMPLATES` for training, every
capital question for dev: the reader must carry "read the answer off the document" to a relation it never saw) and
the paper's `nq_open` / `web_questions` (tfds, prepared in `data.tfds_dir`). A question is kept only when a document
of the corpus supports it (`gold_doc_ids`: for the quiz data answer and subject in one document, `corpora.capital_qa`;
for tfds data any document holding an answer), so dev exact match is not capped by answers missing from the corpus.
`max_docs` subsamples the corpus keeping every gold document of the kept questions (a small corpus makes retrieval
easier than the full one: `top_k_match` says how much).

Host-side batch work (`span_masks`, `span_text`) follows `realm_jax.reader`: the reader scores spans of the document
part of join(x, z) only; a span is correct when its token ids equal a tokenised answer (HF `RealmRetriever`).
Shape suffixes: Q questions, B batch, K documents per question, Ld document row, S spans of a document part, G gold.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence

import numpy as np

from core.config import ConfigError
from core.finetune import metrics as metrics_lib
from realm_jax import corpora, reader

DATASETS = ("capitals", "quiz", "nq_open", "web_questions")
# dataset -> (tfds name in core.data.paper_dataset, train split, dev split). WebQuestions has no dev split in tfds:
# its test split (2,032 questions) is the dev here; ORQA held out 361 training questions instead.
TFDS = {
  "nq_open": ("natural_questions_open", "train", "validation"),
  "web_questions": ("web_questions", "train", "test"),
}
KNOWLEDGE_DOCS = 122_121  # corpora.knowledge_corpus(): 117,659 WordNet synsets + 4,462 Wikipedia blocks


@dataclasses.dataclass(frozen=True)
class QAData:
  documents: list[corpora.Document]  # doc_id = position
  train: list[corpora.QAExample]  # gold_doc_ids index `documents`
  dev: list[corpora.QAExample]


@functools.lru_cache(maxsize=1)
def _full_corpus() -> tuple[corpora.Document, ...]:
  return tuple(corpora.knowledge_corpus())


@functools.lru_cache(maxsize=4)
def _quiz_pool(categories: tuple[str, ...]) -> tuple[corpora.QAExample, ...]:
  """`corpora.capital_qa` over the whole corpus, questions without a gold document dropped, duplicates merged."""
  return tuple(_merge_duplicates(corpora.capital_qa(_full_corpus(), categories, require_gold=True)))


def tfds_questions(name: str, split: str, tfds_dir: str = "") -> list[corpora.QAExample]:
  """(question, answers) records of a tfds QA dataset: natural_questions_open ('question', 'answer': [str]) or
  web_questions ('question', 'answers': [str], 'url'), through `core.data.paper_dataset`; no gold documents yet.
  A one-line ConfigError when the data is not prepared in `tfds_dir`."""
  from core import data as core_data

  try:
    source = core_data.paper_dataset(name, split, data_dir=tfds_dir or None)
  except (FileNotFoundError, RuntimeError) as e:
    raise ConfigError(f"data.tfds_dir: needs tfds data at {tfds_dir or 'the tfds default directory'!r} "
                      f"({' '.join(str(e).split())})") from None
  out = []
  for record in source:
    answers = record["answer"] if "answer" in record else record["answers"]
    answers = tuple(str(a).strip() for a in ([answers] if isinstance(answers, str) else answers) if str(a).strip())
    if answers:
      out.append(corpora.QAExample(str(record["question"]).strip(), answers, ()))
  return out


@functools.lru_cache(maxsize=1)
def _full_phrase_index():
  return corpora._PhraseIndex(_full_corpus())  # pylint: disable=protected-access  (capital_qa's phrase matching)


def _with_answer_docs(questions: Sequence[corpora.QAExample]) -> list[corpora.QAExample]:
  """The questions with gold_doc_ids = every document of the whole corpus holding one of their answers as whole
  words (case- and punctuation-insensitive, as `corpora.capital_qa` matches)."""
  index = _full_phrase_index()
  return [q._replace(gold_doc_ids=tuple(sorted(set().union(*(index.find(a) for a in q.answers))))) for q in questions]


def _merge_duplicates(questions: Sequence[corpora.QAExample]) -> list[corpora.QAExample]:
  """One example per question text, answers and gold documents of its copies merged ('What is the capital of
  Georgia?' is asked for the US state and for the country), in first-seen order."""
  merged: dict[str, corpora.QAExample] = {}
  for q in questions:
    if q.question in merged:
      old = merged[q.question]
      answers = old.answers + tuple(a for a in q.answers if a not in old.answers)
      merged[q.question] = corpora.QAExample(q.question, answers, tuple(sorted({*old.gold_doc_ids, *q.gold_doc_ids})))
    else:
      merged[q.question] = q
  return list(merged.values())


def _sample(questions: list, limit: int, rng: np.random.Generator) -> list:
  order = rng.permutation(len(questions))
  return [questions[i] for i in (order[:limit] if limit else order)]


def subsample_corpus(
  documents: Sequence[corpora.Document], splits: Sequence[Sequence[corpora.QAExample]], max_docs: int, seed: int
) -> tuple[list[corpora.Document], list[list[corpora.QAExample]]]:
  """At most `max_docs` documents (0 = all): every gold document of the questions plus a seeded uniform sample of
  the others, in corpus order, renumbered 0..N-1; the questions' gold_doc_ids are renumbered with them."""
  if not max_docs or max_docs >= len(documents):
    return list(documents), [list(s) for s in splits]
  gold = sorted({i for split in splits for q in split for i in q.gold_doc_ids})
  if len(gold) > max_docs:
    raise ConfigError(f"data.max_docs: {max_docs} is fewer than the {len(gold)} gold documents of the questions "
                      "(raise it, or lower data.max_questions)")
  rest = np.setdiff1d(np.arange(len(documents)), gold)
  extra = np.random.default_rng(seed).choice(rest, size=max_docs - len(gold), replace=False)
  keep = np.sort(np.concatenate([np.asarray(gold, np.int64), extra.astype(np.int64)]))
  new_id = {int(old): new for new, old in enumerate(keep)}
  docs = [corpora.Document(new, documents[old].title, documents[old].text) for new, old in enumerate(keep)]
  renumbered = [[q._replace(gold_doc_ids=tuple(new_id[i] for i in q.gold_doc_ids)) for q in s] for s in splits]
  return docs, renumbered


def build(
  dataset: str, *, max_docs: int = 0, max_questions: int = 0, dev_fraction: float = 0.4, seed: int = 0,
  tfds_dir: str = ""
) -> QAData:
  """The corpus and the train / dev questions of `dataset` (module docstring). The dev questions never share a
  question text with the train ones. One-line ConfigError when a split ends up empty."""
  if dataset not in DATASETS:
    raise ConfigError(f"data.dataset: unknown value {dataset!r} (allowed: {', '.join(DATASETS)})")
  full = _full_corpus()
  rng = np.random.default_rng(seed)
  if dataset == "capitals":
    pool = _sample(list(_quiz_pool(corpora.CAPITAL_CATEGORIES)), max_questions, rng)
    n_dev = min(len(pool) - 1, max(1, round(dev_fraction * len(pool))))
    dev, train = pool[:n_dev], pool[n_dev:]
  elif dataset == "quiz":
    others = tuple(c for c in corpora.QUESTION_TEMPLATES if c not in corpora.CAPITAL_CATEGORIES)
    train = _sample(list(_quiz_pool(others)), max_questions, rng)
    dev = _sample(list(_quiz_pool(corpora.CAPITAL_CATEGORIES)), max_questions, rng)
  else:
    name, train_split, dev_split = TFDS[dataset]
    raw_train = _sample(_merge_duplicates(tfds_questions(name, train_split, tfds_dir)), max_questions, rng)
    raw_dev = _sample(_merge_duplicates(tfds_questions(name, dev_split, tfds_dir)), max_questions, rng)
    train, dev = (
      [q for q in _with_answer_docs(split) if q.gold_doc_ids] for split in (raw_train, raw_dev)
    )
    for split, raw, kept in (("train", raw_train, train), ("dev", raw_dev, dev)):
      if not kept:
        raise ConfigError(f"data.dataset: no {split} question of {dataset!r} has an answer in any document of the "
                          f"knowledge corpus ({len(raw)} questions read; the {split} split is empty after filtering)")
  dev_texts = {q.question for q in dev}
  kept = [q for q in train if q.question not in dev_texts]  # quiz / tfds: no question text in both splits
  if not kept or not dev:
    empty = "train" if not kept else "dev"
    raise ConfigError(f"data.dataset: the {empty} split of {dataset!r} is empty after filtering "
                      f"({len(train)} train questions before removing the dev ones, {len(dev)} dev)")
  train = kept
  documents, (train, dev) = subsample_corpus(full, (train, dev), max_docs, seed)
  return QAData(documents, train, dev)


def default_tfds_dir() -> str:
  """Where tfds looks when data.tfds_dir is '' (its TFDS_DATA_DIR or ~/tensorflow_datasets), without importing it."""
  return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


@dataclasses.dataclass(frozen=True)
class QuestionRows:
  """Questions as '[CLS] question [SEP]' rows with their tokenised answers and gold documents (-1 pads)."""

  examples: list[corpora.QAExample]
  ids_QxL: np.ndarray  # int32
  mask_QxL: np.ndarray  # int32
  gold_QxG: np.ndarray  # int32
  answer_ids: list[list[np.ndarray]]  # per question: `reader.tokenize_answers`

  @property
  def size(self) -> int:
    return len(self.examples)

  def features(self) -> dict[str, np.ndarray]:
    """The per-question arrays a batch starts from (`question` = the row index, for the answer lookup)."""
    return {"question": np.arange(self.size, dtype=np.int32), "query_ids": self.ids_QxL, "query_mask": self.mask_QxL,
            "gold_docs": self.gold_QxG}


def question_rows(tokenizer, examples: Sequence[corpora.QAExample], query_len: int) -> QuestionRows:
  """Tokenises questions (truncated to query_len) and answers; a question none of whose answers tokenises to a
  wordpiece is dropped (it cannot be supervised)."""
  kept, answers = [], []
  for q in examples:
    try:
      answers.append(reader.tokenize_answers(tokenizer, q.answers))
    except ValueError:
      continue
    kept.append(q)
  rows = tokenizer.encode_batch([q.question for q in kept], max_length=query_len)
  width = max([1] + [len(q.gold_doc_ids) for q in kept])
  gold = np.full((len(kept), width), -1, np.int32)
  for i, q in enumerate(kept):
    gold[i, : len(q.gold_doc_ids)] = q.gold_doc_ids
  return QuestionRows(kept, rows["input_ids"], rows["attention_mask"], gold, answers)


def span_masks(
  doc_ids_BxKxLd: np.ndarray, doc_mask_BxKxLd: np.ndarray, starts_S: np.ndarray, ends_S: np.ndarray,
  answer_ids: Sequence[Sequence[np.ndarray]], sep_id: int
) -> tuple[np.ndarray, np.ndarray]:
  """(allowed_BxKxS, correct_BxKxS) over the spans (starts_S, ends_S) of the document part of join(x, z): the
  document rows without their [CLS] (join's columns Lq.. ), so span s covers join columns Lq + starts_S[s] ..
  Lq + ends_S[s]. Allowed: inside title or text, no [SEP] (`reader.document_span_mask`); correct: allowed and equal
  to one of question b's tokenised answers (`reader.answer_span_mask`)."""
  part_ids, part_mask = doc_ids_BxKxLd[..., 1:], doc_mask_BxKxLd[..., 1:]
  allowed = reader.document_span_mask(np.ones_like(part_ids), part_mask, starts_S, ends_S, ids_BxL=part_ids,
                                      sep_id=sep_id)
  correct = np.stack([reader.answer_span_mask(part_ids[b], allowed[b], starts_S, ends_S, answer_ids[b])
                      for b in range(len(part_ids))])
  return allowed, correct


def span_text(tokenizer, document: corpora.Document, row_ids_Ld: np.ndarray, start: int, end: int, sep_id: int) -> str:
  """The original text of document-part span start..end (`span_masks` coordinates: row token start + 1 ..), cut
  from the title or text through the tokenizer's character offsets, so 'Porto-Novo' reads as written, not as the
  decoded 'porto - novo' (ORQA's `get_final_text`). Falls back to decoding the ids when the row's tokens are not the
  segment's own (a row built some other way)."""
  row_ids_Ld = np.asarray(row_ids_Ld)
  first, last = int(start) + 1, int(end) + 1  # row token positions ([CLS] at 0)
  seps = np.flatnonzero(row_ids_Ld == sep_id)
  n_title = int(seps[0]) - 1 if len(seps) else len(row_ids_Ld) - 1
  if last <= n_title:
    segment, offset = document.title, 1
  elif first >= n_title + 2:
    segment, offset = document.text, n_title + 2
  else:
    return reader.answer_text(tokenizer, row_ids_Ld, first, last)
  ids, offsets, _ = tokenizer.encode_with_offsets(segment)
  a, b = first - offset, last - offset
  if b >= len(ids) or list(ids[a : b + 1]) != [int(i) for i in row_ids_Ld[first : last + 1]]:
    return reader.answer_text(tokenizer, row_ids_Ld, first, last)
  return segment[offsets[a][0] : offsets[b][1]]


def contains_answer(text: str, answers: Sequence[str]) -> bool:
  """An answer occurs in `text` as whole words after SQuAD normalisation (ORQA's `has_answer`, for top_k_match)."""
  haystack = f" {metrics_lib.normalize_answer(text)} "
  return any(f" {n} " in haystack for n in map(metrics_lib.normalize_answer, answers) if n)


SCORES = ("top_k_match", "reader_oracle", "exact_match_tokens", "gold_recall_at_k")


def score_predictions(tokenizer, documents: Sequence[corpora.Document], examples: Sequence[corpora.QAExample],
                      batch: dict[str, np.ndarray], doc_B, span_B, starts_S, ends_S) -> list[dict]:
  """Per question of an evaluated batch (its first len(examples) rows): the predicted span's text (`span_text`),
  its answers, and the `SCORES`: top_k_match (an answer string in a retrieved document: ORQA's top_k_match, the
  retrieval upper bound), reader_oracle (a correct span among the k), exact_match_tokens (the predicted span is
  correct token for token) and gold_recall_at_k (a gold document among the k)."""
  rows = []
  for b, example in enumerate(examples):
    k, s = int(doc_B[b]), int(span_B[b])
    doc = documents[int(batch["candidate_docs"][b, k])]
    text = span_text(tokenizer, doc, batch["candidate_ids"][b, k], starts_S[s], ends_S[s], tokenizer.sep_id)
    retrieved = [documents[int(i)] for i in batch["candidate_docs"][b]]
    rows.append({
      "question": example.question,
      "prediction": text,
      "answers": list(example.answers),
      "top_k_match": float(any(contains_answer(f"{z.title} {z.text}", example.answers) for z in retrieved)),
      "reader_oracle": float(batch["correct"][b].any()),
      "exact_match_tokens": float(batch["correct"][b, k, s]),
      "gold_recall_at_k": float(batch["gold_hit"][b]),
    })
  return rows
