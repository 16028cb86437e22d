"""REALM §3.4 salient spans and the Table 2 masking strategies (realm_jax.masking)."""

import numpy as np
import pytest

from core.data import corpora, tokenizers
from realm_jax import masking

TEXT = (
  "The Bank of England was founded on 27 July 1694. Marie Curie won the prize in 1911, her 2nd. "
  "Prices rose by 3.5% in the 1990s and 1,250 people left. Ludwig van Beethoven moved to Vienna in November 1792."
)


@pytest.fixture(scope="module")
def tokenizer():
  return tokenizers.WordPieceTokenizer(corpora.bert_vocab_path())


def _spans(text, **kwargs):
  return [text[s:e] for s, e in masking.salient_spans(text, **kwargs)]


@pytest.mark.parametrize(
  "text, expected",
  [
    ("He arrived on 12 May 1998 by boat.", ["12 May 1998"]),
    ("It closed in May 1998, reopened on May 3rd, 2001, and again on 4 June.", ["May 1998", "May 3rd, 2001", "4 June"]),
    ("Jazz spread in the 1920s, as early as 1917.", ["1920s", "1917"]),
    ("It cost 1,000.50 dollars, 45% more, and came 3rd of 12.", ["1,000.50", "45%", "3rd", "12"]),
    ("The Bank of England and Ludwig van Beethoven met J. R. R. Tolkien.",
     ["Bank of England", "Ludwig van Beethoven", "J. R. R. Tolkien"]),
    ("In 44 BC the senate met.", ["44 BC"]),
  ],
)
def test_salient_spans_dates_numbers_names(text, expected):
  assert _spans(text) == expected


@pytest.mark.parametrize(
  "text",
  [
    "Anarchism is a political philosophy.",  # a single sentence-initial capitalised word
    "Yesterday it rained. Then it snowed.",  # starters, one word per sentence
    "The B52 and H2O are not numbers.",  # digits glued to letters; "B52" alone is one word
    "London and Paris are cities.",  # 'and' does not join names; one word each
  ],
)
def test_no_salient_span(text):
  assert _spans(text) == []


def test_single_word_names_option_skips_sentence_start():
  assert _spans("Paris is the capital of France.", single_word_names=True) == ["France"]


def test_overlapping_spans_merge():
  # The date rule and the number rule both match inside "12 May 1998"; one span comes out.
  assert masking.salient_spans("on 12 May 1998 then") == [(3, 14)]


def _check_labels(tokens, masked_ids_L, labels_L):
  predicted_L = labels_L != masking.IGNORE_ID
  np.testing.assert_array_equal(labels_L[predicted_L], tokens.ids_L[predicted_L])
  np.testing.assert_array_equal(masked_ids_L[~predicted_L], tokens.ids_L[~predicted_L])  # only predicted change
  assert not predicted_L[tokens.special_L].any()
  assert (masked_ids_L[predicted_L] == tokens.mask_id).all()  # defaults: [MASK] everywhere predicted
  return predicted_L


def test_salient_mask_covers_exactly_one_span_per_sentence(tokenizer):
  tokens = masking.tokenize_with_offsets(tokenizer, TEXT)
  spans = masking.salient_spans(TEXT)
  for seed in range(5):
    masked_ids_L, labels_L = masking.salient_span_mask(tokens, np.random.default_rng(seed))
    predicted_L = _check_labels(tokens, masked_ids_L, labels_L)
    chosen = [sp for sp in spans if masking.span_positions(tokens, *sp)[predicted_L].any()]
    assert len(chosen) == len(masking.sentence_bounds(TEXT)) == 4
    union_L = np.zeros_like(predicted_L)
    for sp in chosen:
      span_L = masking.span_positions(tokens, *sp)
      assert predicted_L[span_L].all()  # every wordpiece of the chosen span
      union_L |= span_L
    np.testing.assert_array_equal(union_L, predicted_L)  # and nothing else
    pieces = tokenizer.tokenize(" ".join(TEXT[s:e] for s, e in chosen))
    assert len(pieces) == predicted_L.sum()


def test_salient_mask_on_text_without_span_predicts_nothing(tokenizer):
  tokens = masking.tokenize_with_offsets(tokenizer, "anarchism is a philosophy.")
  _, labels_L = masking.salient_span_mask(tokens, np.random.default_rng(0))
  assert (labels_L == masking.IGNORE_ID).all() and not masking.has_salient_span(tokens.text)


@pytest.mark.parametrize("kind", ["uniform", "random_span"])
def test_budget_masks_about_15_percent(tokenizer, kind):
  tokens = masking.tokenize_with_offsets(tokenizer, " ".join([TEXT] * 4), max_length=512)  # ~200 wordpieces
  counts = []
  for seed in range(10):
    masked_ids_L, labels_L = masking.MASKERS[kind](tokens, np.random.default_rng(seed))
    counts.append(_check_labels(tokens, masked_ids_L, labels_L).sum())
  fraction = np.mean(counts) / len(tokens.ids_L)
  assert 0.12 <= fraction <= 0.16, fraction  # budget round(0.15 L); a span is redrawn rather than overshoot


def test_random_spans_are_whole_words_and_longer_than_one_token(tokenizer):
  tokens = masking.tokenize_with_offsets(tokenizer, " ".join([TEXT] * 4), max_length=512)
  _, labels_L = masking.random_span_mask(tokens, np.random.default_rng(0))
  predicted_L = labels_L != masking.IGNORE_ID
  masked_words = set(tokens.word_ids_L[predicted_L].tolist())
  assert predicted_L[np.isin(tokens.word_ids_L, list(masked_words))].all()  # whole words
  runs = np.diff(np.flatnonzero(np.diff(np.r_[0, predicted_L.astype(int), 0])))[::2]
  assert runs.mean() > 1.5  # geometric(0.2) spans: mean 3.8 words when untruncated


@pytest.mark.parametrize("kind", sorted(masking.MASKERS))
def test_same_seed_same_output_different_seed_different(tokenizer, kind):
  tokens = masking.tokenize_with_offsets(tokenizer, TEXT)
  first = masking.MASKERS[kind](tokens, np.random.default_rng(7))
  again = masking.MASKERS[kind](tokens, np.random.default_rng(7))
  np.testing.assert_array_equal(first[1], again[1])
  others = [masking.MASKERS[kind](tokens, np.random.default_rng(s))[1] for s in range(8, 12)]
  assert any((o != first[1]).any() for o in others)


def test_truncation_and_batch(tokenizer):
  short = masking.tokenize_with_offsets(tokenizer, TEXT, max_length=12)
  assert len(short.ids_L) == 12 and short.special_L[[0, -1]].all()
  np.testing.assert_array_equal(short.ids_L, tokenizer.encode(TEXT)[:11] + [tokenizer.sep_id])
  _, labels_L = masking.salient_span_mask(short, np.random.default_rng(0))
  assert (labels_L[-1] == masking.IGNORE_ID) and not (labels_L[1:-1] != masking.IGNORE_ID)[10:].any()
  batch = masking.mask_batch([short, masking.tokenize_with_offsets(tokenizer, "Marie Curie")], np.random.default_rng(0))
  assert batch["input_ids"].shape == (2, 12) and batch["attention_mask"][1].sum() == 5
  assert (batch["labels"][1, 5:] == masking.IGNORE_ID).all()
  with pytest.raises(ValueError, match="masking kind"):
    masking.mask_batch([short], np.random.default_rng(0), kind="bogus")
