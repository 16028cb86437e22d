"""Finetuning task loaders on the real bundled data, the negation generator, GLUE TSV / tfds / SQuAD readers."""

import collections

import pytest
import tensorflow_datasets as tfds

from core.finetune import examples, glue, squad, tasks, tasks_bundled, tasks_generated

BUNDLED_SIZES = {"polarity": (150, 50), "newsgroups": (150, 50), "wordnet_pos": (4000, 1000),
                 "capital_qa": (182 * 4, 46), "wiki_links": (4000, 1000)}  # fmt: skip


def _key(example):
  if isinstance(example, examples.QaExample):
    return (example.question, example.context)
  if isinstance(example, examples.TaggingExample):
    return example.words
  return example.texts


@pytest.mark.parametrize("name", tasks.BUNDLED_NAMES)
def test_bundled_tasks_are_labelled_seeded_and_disjoint(name):
  data = tasks.load_task(name, seed=0)
  assert (len(data.train), len(data.dev)) == BUNDLED_SIZES[name]
  again, other = tasks.load_task(name, seed=0), tasks.load_task(name, seed=1)
  assert again.train == data.train and again.dev == data.dev
  assert other.train != data.train
  spec = data.spec
  for example in data.train + data.dev:
    if spec.task_type == "classification":
      assert 0 <= example.label < spec.num_labels and example.texts[0].strip()
    elif spec.task_type == "tagging":
      assert len(example.words) == len(example.tags) and set(example.tags) <= {0, 1, 2} and 1 in example.tags
    else:
      assert example.context[example.answer_start :].startswith(example.answers[0])
  if name == "capital_qa":  # split by question, so no dev question is seen in training
    assert not {e.question for e in data.train} & {e.question for e in data.dev}
  elif name == "wiki_links":
    assert len(set(map(_key, data.train)) & set(map(_key, data.dev))) < 5  # split by article; a few stock phrases
  else:
    assert not set(map(_key, data.train)) & set(map(_key, data.dev))
  if spec.task_type == "classification":
    counts = collections.Counter(e.label for e in data.train)
    assert len(counts) == spec.num_labels and min(counts.values()) > 0.3 * max(counts.values())


def test_newsgroup_headers_are_removed():
  data = tasks.load_task("newsgroups")
  assert not any(
    "Newsgroups:" in e.texts[0] or e.texts[0].startswith(("Path:", "Xref:")) for e in data.train + data.dev
  )


def test_wiki_link_tagging_by_hand():
  marked = tasks_bundled.mark_links("The [[Paris|city of Paris]] is in [[France]], see [[File:x.png|a [[map]]]].")
  assert marked.startswith("The \x01city of Paris\x02 is in \x01France\x02,")
  example = tasks_bundled.tag_words("The \x01city of Paris\x02 is in \x01France\x02, near \x01A\x02 \x01B\x02.")
  assert example.words == ("The", "city", "of", "Paris", "is", "in", "France,", "near", "A", "B.")
  assert example.tags == (0, 1, 2, 2, 0, 0, 1, 0, 1, 1)


def test_negation_generator_is_deterministic_and_labels_flip():
  train, dev = tasks_generated.generate_negation(seed=3, train_size=300, dev_size=100)
  assert (train, dev) == tasks_generated.generate_negation(seed=3, train_size=300, dev_size=100)
  assert train != tasks_generated.generate_negation(seed=4, train_size=300, dev_size=100)[0]
  assert not {s for s, _ in train} & {s for s, _ in dev}
  # The label is polarity XOR negated: the same adjective flips its label under negation.
  import numpy as np

  rng = np.random.default_rng(0)
  lexicon = set(tasks_generated.POSITIVE) | set(tasks_generated.NEGATIVE)
  labels_of = collections.defaultdict(set)
  for _ in range(2000):
    sentence, label, negated = tasks_generated.negation_sentence(rng)
    (adjective,) = lexicon & set(sentence.split())
    assert label == int(adjective in tasks_generated.POSITIVE) ^ int(negated), sentence
    labels_of[adjective].add(label)
  assert len(labels_of) == len(lexicon) and all(v == {0, 1} for v in labels_of.values())  # no word gives the label
  # Concrete cases.
  by_text = dict(train + dev)
  for sentence, label in by_text.items():
    if sentence.startswith("i did not think") and sentence.endswith(" good ."):
      assert label == 0


def test_negation_is_loaded_through_the_glue_tsv_reader(tmp_path):
  data = tasks.load_task("negation", cache_dir=str(tmp_path), seed=1, train_size=200, dev_size=50)
  assert (len(data.train), len(data.dev)) == (200, 50)
  header = (tmp_path / "negation_seed1" / "train.tsv").read_text().splitlines()[0]
  assert header == "sentence\tlabel"
  generated = tasks_generated.generate_negation(seed=1, train_size=200, dev_size=50)[0]
  assert [(e.texts[0], e.label) for e in data.train] == generated


def test_word_order_generator_swaps_one_adjacent_pair():
  sources = tasks_generated.usage_examples()
  assert len(sources) > 20000 and all(6 <= len(s.split()) <= 20 for s in sources)
  train, dev = tasks_generated.generate_word_order(seed=3, train_size=300, dev_size=100)
  assert (train, dev) == tasks_generated.generate_word_order(seed=3, train_size=300, dev_size=100)
  assert 100 < sum(label for _, label in train) < 200  # about half acceptable
  source_set = set(sources)

  def origin(sentence, label):
    if label:
      return sentence
    words = sentence.split()
    unswapped = [" ".join(words[:i] + [words[i + 1], words[i]] + words[i + 2 :]) for i in range(len(words) - 1)]
    (found,) = {u for u in unswapped if u in source_set} - {sentence}  # exactly one adjacent swap undoes it
    return found

  train_sources = [origin(s, label) for s, label in train]
  dev_sources = [origin(s, label) for s, label in dev]
  assert all(s in source_set for s in train_sources + dev_sources)
  assert len(set(train_sources)) == 300 and not set(train_sources) & set(dev_sources)  # each source used once
  assert all(s not in source_set for s, label in train if label == 0)


def test_word_order_is_loaded_as_cola(tmp_path):
  data = tasks.load_task("word_order", cache_dir=str(tmp_path), seed=1, train_size=200, dev_size=50)
  assert (len(data.train), len(data.dev)) == (200, 50) and data.spec.metric == "mcc"
  lines = (tmp_path / "word_order_seed1" / "train.tsv").read_text().splitlines()
  assert len(lines) == 200  # CoLA's layout has no header row
  generated = tasks_generated.generate_word_order(seed=1, train_size=200, dev_size=50)[0]
  assert [(e.texts[0], e.label) for e in data.train] == generated
  assert all(line.split("\t")[2] == ("" if label else "*") for line, (_, label) in zip(lines, generated))


GLUE_ROWS = {  # (header or None, one row, expected texts, expected label)
  "cola": (None, ["gj04", "1", "", "The sailors rode the breeze clear of the rocks."], 1),
  "sst2": (["sentence", "label"], ["a gripping film", "1"], 1),
  "mrpc": (["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"], ["0", "1", "2", "He left.", "He went."], 0),
  "qqp": (["id", "qid1", "qid2", "question1", "question2", "is_duplicate"], ["7", "1", "2", "Why?", "How?", "1"], 1),
  "stsb": (
    ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"],
    ["0", "g", "f", "y", "0", "s", "s", "A man.", "A dog.", "2.5"],
    2.5,
  ),
  "mnli": (
    [
      "index",
      "promptID",
      "pairID",
      "genre",
      "s1bp",
      "s2bp",
      "s1p",
      "s2p",
      "sentence1",
      "sentence2",
      "label1",
      "gold_label",
    ],
    ["0", "1", "2", "g", "", "", "", "", "P.", "H.", "neutral", "neutral"],
    2,
  ),
  "qnli": (["index", "question", "sentence", "label"], ["0", "Who?", "Me.", "not_entailment"], 1),
  "rte": (["index", "sentence1", "sentence2", "label"], ["0", "A.", "B.", "entailment"], 0),
}


@pytest.mark.parametrize("task", tasks.GLUE_NAMES)
def test_glue_tsv_round_trip(task, tmp_path):
  header, row, label = GLUE_ROWS[task]
  fmt = glue.GLUE_TSV[task]
  for name in ("train.tsv", fmt.dev_file):
    path = tmp_path / name
    lines = ([header] if header else []) + [row, row]
    path.write_text("".join("\t".join(line) + "\n" for line in lines))
  data = tasks.load_task(task, data_dir=str(tmp_path))
  assert len(data.train) == len(data.dev) == 2
  example = data.train[0]
  assert example.label == label
  assert len(example.texts) == len(fmt.text_columns)
  assert data.spec.task_type == ("regression" if task == "stsb" else "classification")
  assert data.spec.metric == {"cola": "mcc", "stsb": "spearman"}.get(task, "accuracy")
  glue.write_glue_tsv(tmp_path / "again" / "train.tsv", ("sentence", "label"), [("x\ty", 1)])
  assert glue.read_glue_tsv(tmp_path / "again" / "train.tsv", glue.GLUE_TSV["sst2"]) == [
    examples.TextExample(("x y",), 1)
  ]


@pytest.mark.parametrize("task,num_labels", [("sst2", 2), ("stsb", 1), ("mnli", 3), ("qnli", 2)])
def test_glue_from_tfds_mock_data(task, num_labels):
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, num_examples=6):
    data = tasks.load_task(task)
  assert len(data.train) == 6 and len(data.dev) == 6
  assert data.spec.num_labels == num_labels
  assert all(isinstance(t, str) for e in data.train for t in e.texts)
  if task == "stsb":
    assert isinstance(data.train[0].label, float)
  else:
    assert all(0 <= e.label < num_labels for e in data.train)


def test_squad_json_round_trip_and_tfds_mock(tmp_path):
  qa = tasks.load_task("capital_qa").dev[:5]
  squad.write_squad_json(tmp_path / "train-v1.1.json", qa)
  squad.write_squad_json(tmp_path / "dev-v1.1.json", qa)
  data = tasks.load_task("squad", data_dir=str(tmp_path))
  assert data.train == qa and data.spec.task_type == "span_qa"
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, num_examples=3):
    data = tasks.load_task("squad")
  assert len(data.train) == 3 and isinstance(data.train[0].context, str)


def test_unknown_task_lists_the_allowed_ones():
  with pytest.raises(ValueError) as info:
    tasks.load_task("sst3")
  assert "unknown task 'sst3' (allowed: cola, sst2," in str(info.value) and "\n" not in str(info.value)
