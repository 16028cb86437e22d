"""Tests for reformer_jax.tasks and reformer_jax.listops: structure, seeded determinism, exact resume, host slices,
the ListOps evaluator on hand examples and against LRA's np.median rule, split sizes and byte round trips."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from core.data.tokenizers import ByteTokenizer
from reformer_jax import listops, tasks

SMALL = listops.ListOpsSpec(min_length=20, max_length=80, max_depth=6, max_args=5)


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert set(x) == set(y)
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def _one_line_error(fn, match):
  with pytest.raises(ValueError, match=match) as info:
    fn()
  assert "\n" not in str(info.value)


# -- duplication ----------------------------------------------------------------------------------------------------


def test_duplication_rows_are_0w0w_scored_on_the_second_copy():
  length, vocab = 16, 5
  batch = next(iter(tasks.duplication_dataset(length, vocab, global_batch_size=3, seed=4)))
  assert batch["input_ids"].shape == (3, length) and batch["input_ids"].dtype == np.int32
  for row, weights in zip(batch["input_ids"], batch["weights"]):
    w = row[1:8]
    assert row[0] == 0 and row[8] == 0 and np.array_equal(row[9:], w)
    assert w.min() >= 1 and w.max() <= vocab - 1
    np.testing.assert_array_equal(weights, [0.0] * 9 + [1.0] * 7)  # targets 9..15: the second w
  np.testing.assert_array_equal(batch["attention_mask"], 1)


def test_duplication_row_is_a_function_of_seed_split_and_index():
  ds = tasks.duplication_dataset(12, 100, global_batch_size=2, seed=9)
  batches = _take(iter(ds), 3)
  for b, batch in enumerate(batches):
    for j in range(2):
      expected = tasks.duplication_row(9, 2 * b + j, 12, 100)
      np.testing.assert_array_equal(batch["input_ids"][j], expected["input_ids"])
  other_seed = next(iter(tasks.duplication_dataset(12, 100, global_batch_size=2, seed=10)))
  other_split = next(iter(tasks.duplication_dataset(12, 100, global_batch_size=2, seed=9, split="validation")))
  assert not np.array_equal(other_seed["input_ids"], batches[0]["input_ids"])
  assert not np.array_equal(other_split["input_ids"], batches[0]["input_ids"])


def test_duplication_resume_and_host_slices():
  make = lambda **kw: tasks.duplication_dataset(10, 50, global_batch_size=4, seed=1, **kw)
  iterator = iter(make())
  _take(iterator, 3)
  state = json.loads(json.dumps(iterator.get_state()))  # what a checkpoint stores
  after = _take(iterator, 2)
  resumed = iter(make())
  resumed.set_state(state)
  _assert_batches_equal(after, _take(resumed, 2))
  # Two hosts build the two halves of the 1-host global batch.
  whole = _take(iter(make()), 2)
  halves = [_take(iter(make(shard_index=i, shard_count=2)), 2) for i in range(2)]
  for b in range(2):
    joined = np.concatenate([halves[0][b]["input_ids"], halves[1][b]["input_ids"]])
    np.testing.assert_array_equal(joined, whole[b]["input_ids"])


def test_finite_eval_pads_the_last_batch_with_weight_zero_rows():
  batches = list(tasks.duplication_dataset(8, 10, global_batch_size=4, seed=0, split="test", num_rows=6))
  assert len(batches) == 2
  np.testing.assert_array_equal(batches[1]["weights"][2:], 0)
  np.testing.assert_array_equal(batches[1]["input_ids"][1], tasks.duplication_row(0, 5, 8, 10, "test")["input_ids"])


def test_task_arguments_are_checked_with_one_line_errors():
  _one_line_error(lambda: tasks.duplication_dataset(15, 10, 2, 0), "length: must be an even int")
  _one_line_error(lambda: tasks.duplication_dataset(16, 1, 2, 0), "vocab_size")
  _one_line_error(lambda: tasks.duplication_dataset(16, 10, 2, -1), "seed")
  _one_line_error(lambda: tasks.duplication_dataset(16, 10, 2, 0, split="dev"), "split: unknown value 'dev'")
  _one_line_error(lambda: tasks.duplication_dataset(16, 10, 3, 0, 0, 2), "global_batch_size: 3 is not divisible")
  _one_line_error(lambda: tasks.duplication_dataset(16, 10, 2, 0, 2, 2), "shard_index")
  _one_line_error(lambda: tasks.duplication_dataset(16, 10, 2, 0, num_rows=0), "num_rows")


# -- ListOps --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
  "expression, value",
  [
    ("[MAX 4 3 [MIN 2 3 ] 1 0 [MED 1 5 8 9 2 ] ]", 5),  # LRA README's example
    ("[MIN 5 [MAX 1 2 ] 7 ]", 2),
    ("[SM 9 8 7 ]", 4),  # 24 mod 10
    ("[MED 1 2 ]", 1),  # np.median = 1.5, int() -> 1
    ("[MED 9 0 4 7 ]", 5),  # (4 + 7) / 2 = 5.5 -> 5
    ("[MED 3 3 8 ]", 3),
    ("[SM [MAX 9 1 ] [MED 6 8 ] [MIN 4 [SM 5 5 ] ] ]", 6),  # 9 + 7 + 0
    ("( ( ( [MAX 2 ) 9 ) ] )", 9),  # LRA's parenthesised to_string form
    ("7", 7),
  ],
)
def test_evaluator_on_hand_examples(expression, value):
  assert listops.evaluate(expression) == value


def test_median_matches_lra_int_np_median():
  rng = np.random.default_rng(0)
  for _ in range(300):
    values = rng.integers(0, 10, size=rng.integers(2, 11)).tolist()
    assert listops.apply_operator("[MED", values) == int(np.median(values))


@pytest.mark.parametrize("expression", ["[MAX 1 2", "[FOO 1 ]", "1 2", "]", "[MIN ]", "12"])
def test_evaluator_rejects_malformed_expressions(expression):
  _one_line_error(lambda: listops.evaluate(expression), "ListOps")


def test_generator_is_seeded_bounded_and_labelled_by_the_evaluator():
  for index in range(40):
    ids, label = listops.generate(SMALL, 3, "train", index)
    assert SMALL.min_length < len(ids) < SMALL.max_length
    assert 0 <= label < listops.NUM_CLASSES and listops.evaluate(listops.decode(ids)) == label
    again, label_again = listops.generate(SMALL, 3, "train", index)
    assert np.array_equal(ids, again) and label == label_again
    text = listops.decode(ids)
    assert text.startswith("[") and text.endswith("]")  # a root operator: a bare digit has length 1
    np.testing.assert_array_equal(listops.encode(text, len(ids))[0], ids)


def test_lra_defaults_give_lengths_in_500_2000():
  lengths = [len(listops.generate(listops.ListOpsSpec(), 0, "test", i)[0]) for i in range(3)]
  assert all(500 < n < 2000 for n in lengths)


def test_splits_and_seeds_draw_disjoint_examples():
  def texts(seed, split):
    return {listops.decode(listops.generate(SMALL, seed, split, i)[0]) for i in range(60)}

  train = texts(0, "train")
  assert len(train) == 60
  assert not train & texts(0, "validation") and not train & texts(0, "test") and not train & texts(1, "train")


def test_encode_strips_parentheses_pads_and_truncates():
  ids, mask = listops.encode("( ( [SM 3 ) 4 ) ] )", 6)
  np.testing.assert_array_equal(ids, [14, 4, 5, 15, 0, 0])
  np.testing.assert_array_equal(mask, [1, 1, 1, 1, 0, 0])
  ids, mask = listops.encode("[SM 3 4 ]", 2)
  np.testing.assert_array_equal(ids, [14, 4])
  _one_line_error(lambda: listops.encode("[SM 3 x ]", 8), "unknown tokens")


def test_listops_dataset_order_resume_and_eval_padding():
  make = lambda: listops.listops_dataset(SMALL, 64, global_batch_size=4, seed=5, num_examples=10)
  iterator = iter(make())
  batches = _take(iterator, 5)  # 20 rows: two epochs of the 10-example pool
  state = json.loads(json.dumps(iterator.get_state()))
  after = _take(iterator, 2)
  resumed = iter(make())
  resumed.set_state(state)
  _assert_batches_equal(after, _take(resumed, 2))
  labels = np.concatenate([b["label"] for b in batches])
  first_epoch = [listops.generate(SMALL, 5, "train", k)[1] for k in range(10)]
  assert sorted(labels[:10].tolist()) == sorted(first_epoch) and sorted(labels[10:].tolist()) == sorted(first_epoch)
  assert batches[0]["input_ids"].shape == (4, 64) and batches[0]["label"].shape == (4,)
  np.testing.assert_array_equal(batches[0]["attention_mask"].sum(1), (batches[0]["input_ids"] > 0).sum(1))

  evals = list(listops.listops_dataset(SMALL, 64, global_batch_size=4, seed=5, split="validation", num_examples=6))
  assert len(evals) == 2 and evals[1]["weights"].tolist() == [1.0, 1.0, 0.0, 0.0]
  assert evals[0]["label"][1] == listops.generate(SMALL, 5, "validation", 1)[1]


def test_class_distribution_is_a_distribution():
  dist = listops.class_distribution(SMALL, seed=0, num_examples=50)
  assert dist.shape == (10,) and np.isclose(dist.sum(), 1.0) and 0.1 <= dist.max() < 1.0


def test_listops_bad_settings_give_one_line_errors():
  _one_line_error(lambda: listops.ListOpsSpec(max_depth=1).validate(), "listops.max_depth")
  _one_line_error(lambda: listops.ListOpsSpec(min_length=10, max_length=11).validate(), "listops.max_length")
  _one_line_error(lambda: listops.listops_dataset(SMALL, 0, 4, 0), "seq_len")
  _one_line_error(lambda: listops.listops_dataset(SMALL, 8, 4, 0, split="dev"), "split")
  _one_line_error(lambda: listops.apply_operator("[FIRST", [1]), "unknown")


# -- byte-level LM --------------------------------------------------------------------------------------------------


def test_split_bytes_is_enwik8s_90_5_5():
  parts = tasks.split_bytes(np.zeros(tasks.ENWIK8_BYTES, np.uint8))
  assert [len(parts[s]) for s in tasks.SPLITS] == [90_000_000, 5_000_000, 5_000_000]
  parts = tasks.split_bytes(bytes(range(256)) * 4)
  assert [len(parts[s]) for s in tasks.SPLITS] == [921, 51, 52]
  np.testing.assert_array_equal(np.concatenate([parts[s] for s in tasks.SPLITS]), np.tile(np.arange(256), 4))


def test_bundled_wikipedia_xml_char_lm_round_trips_bytes():
  raw = tasks.wikipedia_xml_bytes()
  assert raw.startswith(b"<mediawiki") and 6_000_000 < len(raw) < 6_200_000
  parts = tasks.char_lm_splits("wikipedia_xml")
  assert sum(len(p) for p in parts.values()) == len(raw) and parts["test"].tobytes() == raw[len(raw) * 19 // 20 :]
  train = parts["train"]
  row = next(iter(tasks.char_lm_dataset(train, 64, global_batch_size=2, seed=0)))["input_ids"][0]
  ids = row.tolist()
  start = train.tobytes().find(bytes(i - 3 for i in ids))
  assert start >= 0 and train[start : start + 64].tobytes() == bytes(i - 3 for i in ids)
  head = tasks._byte_row(train[:10], 10)["input_ids"]  # pylint: disable=protected-access
  assert ByteTokenizer().decode(head) == "<mediawiki"


def test_char_lm_train_offsets_are_seeded_and_eval_rows_tile_the_split():
  data = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789" * 3, np.uint8)
  make = lambda seed: tasks.char_lm_dataset(data, 8, global_batch_size=2, seed=seed)
  a, b = _take(iter(make(3)), 3), _take(iter(make(3)), 3)
  _assert_batches_equal(a, b)
  assert any(not np.array_equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, _take(iter(make(4)), 3)))
  for batch in a:
    for row in batch["input_ids"]:
      piece = bytes((row - 3).tolist())
      assert data.tobytes().find(piece) >= 0
  evals = list(tasks.char_lm_dataset(data, 10, global_batch_size=4, seed=0, train=False))
  ids = np.concatenate([b["input_ids"] for b in evals])
  mask = np.concatenate([b["attention_mask"] for b in evals])
  assert len(evals) == 3 and mask.sum() == len(data)  # 108 bytes: 11 rows (the last with 8 bytes) + 1 pad row
  np.testing.assert_array_equal(ids[mask > 0] - 3, data)
  np.testing.assert_array_equal(np.concatenate([b["weights"] for b in evals]), mask)
  assert len(list(tasks.char_lm_dataset(data, 10, global_batch_size=2, seed=0, train=False, max_rows=3))) == 2


def test_char_lm_sources_fail_with_one_line_errors(tmp_path):
  _one_line_error(lambda: tasks.char_lm_splits("text8"), "data.corpus: unknown value 'text8'")
  _one_line_error(lambda: tasks.char_lm_splits("enwik8"), "data.path")
  _one_line_error(lambda: tasks.char_lm_splits("enwik8", tmp_path / "missing"), "data.path")
  with zipfile.ZipFile(tmp_path / "enwik8.zip", "w") as archive:
    archive.writestr("other", b"x")
  _one_line_error(lambda: tasks.enwik8_bytes(tmp_path / "enwik8.zip"), "no member 'enwik8'")
  (tmp_path / "enwik8").write_bytes(b"short")
  _one_line_error(lambda: tasks.enwik8_bytes(tmp_path / "enwik8"), "100,000,000 bytes")
  _one_line_error(lambda: tasks.char_lm_dataset(np.zeros(5, np.uint8), 8, 2, 0), "seq_len")


def test_imagenet64_without_prepared_data_is_a_one_line_error(tmp_path):
  _one_line_error(lambda: tasks.imagenet64_dataset(2, 0, data_dir=tmp_path), "data.tfds_dir")
  _one_line_error(lambda: tasks.imagenet64_source("test"), "split")
  row = tasks.image_row(np.arange(64 * 64 * 3).reshape(64, 64, 3) % 256)
  assert row["input_ids"].shape == (12288,) and row["input_ids"][5] == 5 + 3  # raster order: pixel 1, channel 2
