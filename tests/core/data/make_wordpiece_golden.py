"""Writes golden/wordpiece_golden.json: token ids from HF transformers' pure-Python BERT tokenizer.

Run in the reference venv (transformers installed; torch not needed), after `python -m core.data.fetch
minilm`:

  .venv-ref/bin/python tests/core/data/make_wordpiece_golden.py [--vocab PATH]

transformers >= 5 names the slow Python tokenizer `BertTokenizerLegacy` (`BertTokenizer` is the Rust
backed one); older versions call it `BertTokenizer`. Both ids are recorded when available.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

SENTENCES = [
  "Hello, world!",
  "The quick brown fox jumps over the lazy dog.",
  "What is the capital of France?",
  "Paris is France's capital city.",
  "Café déjà vu: naïve résumé, coöperate, façade, Zürich, São Paulo.",
  "ÉCOLE NORMALE SUPÉRIEURE À PARIS",
  "Ångström, Øresund, Łódź, Dvořák, Brønsted, Fjällräven",
  "Don't stop-believing!!! (really?) [yes] {no} <maybe>",
  "e-mail: someone@example.com, URL: https://example.org/path?q=1&r=2#frag",
  "Numbers: 3.14159, 1,000,000, -42, 1e-9, 2024-06-01, 12:30pm, $19.99, 50%",
  "The year 1492 and the 21st century; 7th, 3rd, 2nd, 1st.",
  "中文分词测试：北京是中国的首都。",
  "日本語のテキストと漢字、カタカナ、ひらがな。",
  "한국어 문장도 포함합니다.",
  "Mixed 中文 and English words in one 句子.",
  "Emoji: 😀🎉👍🏽 and ❤️ are fun 🚀!",
  "Supercalifragilisticexpialidocious and antidisestablishmentarianism are long words.",
  "Pneumonoultramicroscopicsilicovolcanoconiosis",
  "a" * 101,
  "x" * 100 + " short",
  "Unrecognizable tokens: qwzxjkv, zzyzx, blorptastic, frobnicate.",
  "CamelCaseIdentifiersLikeThis and snake_case_names_like_this",
  "MiXeD CaSe TeXt WiTh ODD capitalisation",
  "  leading and trailing whitespace   ",
  "tabs\tand\nnewlines\r\nand   multiple   spaces",
  "Control\x00chars\x07 and zero\u200bwidth joiners\u200d here",
  "Non-breaking\u00a0space and em—dash – en-dash … ellipsis",
  "“Curly quotes” and ‘single ones’ and «guillemets»",
  "Math: x² + y² = z², ∑ᵢ aᵢ, √2 ≈ 1.414, π ≠ 3",
  "Greek: Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
  "Russian: Москва — столица России.",
  "Arabic: القاهرة هي عاصمة مصر.",
  "Hebrew: ירושלים",
  "Hindi: नमस्ते दुनिया",
  "Thai: ภาษาไทยไม่มีช่องว่าง",
  "[MASK] is the capital of [MASK].",
  "The [CLS] and [SEP] tokens appear literally here.",
  "[mask] lowercase special-looking token and [UNK] too",
  "##suffix looking ##tokens",
  "I.B.M. U.S.A. e.g. i.e. etc.",
  "C++ and C# and F# and .NET and Node.js",
  "Who wrote 'Hamlet'? William Shakespeare wrote \"Hamlet\".",
  "Anarchism is a political philosophy that advocates self-governed societies based on voluntary institutions.",
  "Albedo (/ælˈbiːdoʊ/) is the measure of the diffuse reflection of solar radiation.",
  "It's 5 o'clock somewhere; y'all ain't seen nothin' yet.",
  "HTML <b>bold</b> &amp; entities &lt;tag&gt;",
  "",
  "a",
  ".",
  "!!!???...,,,;;;",
  "ﬁ ligature ﬂ and fullwidth ＡＢＣ１２３",
  "Vietnamese: Tiếng Việt có dấu.",
  "Turkish: İstanbul, ıı, Iı, şğü",
  "German: Straße, Größe, Fußgängerübergänge",
]

PAIRS = [
  ("What is the capital of France?", "Paris is the capital and most populous city of France."),
  ("Who wrote Hamlet?", "Hamlet is a tragedy written by William Shakespeare."),
  ("Café?", "Déjà vu!"),
  ("短い質問", "A longer English answer with numbers 1, 2, 3."),
  ("", "empty first segment"),
  ("question [MASK]", "answer [SEP] inside"),
]


def _default_vocab() -> Path:
  root = os.environ.get("JLM_DATA_DIR")
  base = Path(root).expanduser() if root else Path.home() / ".cache" / "jax-lm-methods"
  return base / "minilm" / "vocab.txt"


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--vocab", type=Path, default=_default_vocab())
  parser.add_argument("--out", type=Path, default=Path(__file__).parent / "golden" / "wordpiece_golden.json")
  args = parser.parse_args()

  import transformers  # pylint: disable=g-import-not-at-top

  try:
    from transformers import BertTokenizerLegacy as SlowBertTokenizer  # pylint: disable=g-import-not-at-top
  except ImportError:
    from transformers import BertTokenizer as SlowBertTokenizer  # pylint: disable=g-import-not-at-top
  slow = SlowBertTokenizer(str(args.vocab), do_lower_case=True)
  assert "Fast" not in type(slow).__name__ and "TokenizersBackend" not in str(type(slow).__mro__), type(slow)

  cases = []
  for text in SENTENCES:
    cases.append({"text": text, "pair": None, "ids": slow(text)["input_ids"]})
  for text, pair in PAIRS:
    cases.append({"text": text, "pair": pair, "ids": slow(text, pair)["input_ids"]})
  golden = {
    "reference": f"transformers {transformers.__version__} {type(slow).__name__}(vocab, do_lower_case=True)",
    "vocab_sha256": hashlib.sha256(args.vocab.read_bytes()).hexdigest(),
    "cases": cases,
  }
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
  print(f"wrote {len(cases)} cases to {args.out}")


if __name__ == "__main__":
  main()
