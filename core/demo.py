"""`make demo`: semantic search with the bundled MiniLM-L6 over WordNet glosses + Wikipedia passages.

The retrieval half of REALM (arXiv 2002.08909 §3.1-3.3) with an off-the-shelf encoder: every passage is embedded
once (mean-pooled, L2-normalised MiniLM states = `Embed_doc`), queries likewise (`Embed_input`), and relevance is the
inner product, searched exactly (`core.mips.exact_topk`) and approximately (ScaNN). Printed: top hits for a few
queries, ScaNN recall@10 against exact search, both throughputs, and how often the bsdgames quiz answer to
"What is the capital of X?" appears in the top 5 passages.

  python -m core.demo --config=configs/core/search_demo.py --workdir=workdirs/demo
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from core import bert as bert_lib
from core import bert_import
from core import config as config_lib
from core import main as main_lib
from core import mips
from core import scann_index


def validate(config: ml_collections.ConfigDict) -> None:
  config_lib.check_int(config, "passages", minimum=100)
  config_lib.check_range(config, "wikipedia_share", 0.0, 1.0, inclusive=True)
  config_lib.check_int(config, "max_length", minimum=8)
  config_lib.check_int(config, "batch_size", minimum=1)
  config_lib.check_int(config, "k", minimum=1)
  config_lib.check_int(config, "seed", minimum=0)
  config_lib.check_int(config, "max_quiz_questions", minimum=0)
  if not isinstance(config_lib.get(config, "results_dir"), str):
    raise config_lib.ConfigError(f"results_dir: must be a directory path or '' (no copy), got {config.results_dir!r}")
  queries = config_lib.get(config, "queries")
  if not all(isinstance(q, str) and q.strip() for q in queries):
    raise config_lib.ConfigError(f"queries: must be non-empty strings, got {queries!r}")


def build_passages(config) -> list[tuple[str, str]]:
  """(title, text): Wikipedia 100-word passages, then WordNet noun glosses (all that mention 'capital' first)."""
  from core.data import corpora

  rng = np.random.default_rng(config.seed)
  wiki = corpora.wikipedia_passages(words=100)
  n_wiki = min(len(wiki), int(config.passages * config.wikipedia_share))
  wiki = [wiki[i] for i in sorted(rng.choice(len(wiki), n_wiki, replace=False))]
  glosses = [
    (lemmas[0].replace("_", " "), f"{', '.join(l.replace('_', ' ') for l in lemmas)}: {gloss}")
    for lemmas, gloss, pos in corpora.wordnet_glosses()
    if pos == "n"
  ]
  capital = [g for g in glosses if "capital" in g[1].lower()]
  others = [g for g in glosses if "capital" not in g[1].lower()]
  n_other = max(0, config.passages - n_wiki - len(capital))
  others = [others[i] for i in sorted(rng.choice(len(others), min(n_other, len(others)), replace=False))]
  return wiki + capital + others


class Embedder:
  """Sentence embeddings with MiniLM: WordPiece → `BertEncoder` (jitted per bucket length) → mean pool → L2."""

  def __init__(self, max_length: int, batch_size: int):
    from core.data import corpora, tokenizers

    model_dir = corpora.minilm_dir()
    self.config, self.params = bert_import.load_hf_bert(model_dir)
    self.tokenizer = tokenizers.WordPieceTokenizer(model_dir / "vocab.txt")
    self.model = bert_lib.BertEncoder(self.config)
    self.max_length, self.batch_size = max_length, batch_size
    self._apply = jax.jit(
      lambda params, ids, mask: bert_lib.sentence_embedding(self.model.apply({"params": params}, ids, None, mask), mask)
    )

  def __call__(self, texts: list[str], desc: str | None = None) -> np.ndarray:
    """[N, H] float32. Texts are sorted by length and padded to the next bucket (16, 32, 64, ...) to save compute."""
    lengths = np.array([len(self.tokenizer.encode(t)) for t in texts])
    order = np.argsort(lengths, kind="stable")
    out = np.zeros((len(texts), self.config.hidden_size), np.float32)
    bar = tqdm(total=len(texts), desc=desc, disable=desc is None, dynamic_ncols=True)
    for start in range(0, len(texts), self.batch_size):
      idx = order[start : start + self.batch_size]
      bucket = min(self.max_length, max(16, 1 << int(np.ceil(np.log2(max(lengths[idx].max(), 2))))))
      enc = self.tokenizer.encode_batch([texts[i] for i in idx], max_length=bucket)
      pad = self.batch_size - len(idx)  # keep one batch shape per bucket: fewer compilations
      ids = np.pad(enc["input_ids"], ((0, pad), (0, 0)))
      mask = np.pad(enc["attention_mask"], ((0, pad), (0, 0)))
      out[idx] = np.asarray(self._apply(self.params, ids, mask))[: len(idx)]
      bar.update(len(idx))
    bar.close()
    return out


def capital_questions(limit: int) -> list[tuple[str, list[str]]]:
  """("What is the capital of Kenya?", ["nairobi"]) from the bsdgames quiz capitals files."""
  from core.data import corpora

  questions = []
  for record in corpora.quiz_records():
    if record.answer_field.lower() != "capital":
      continue
    place, answers = record.question_alternatives[0], [a.lower() for a in record.answer_alternatives]
    if place and answers:
      questions.append((f"What is the capital of {place}?", answers))
  return questions[:limit]


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  validate(config)
  os.makedirs(workdir, exist_ok=True)
  passages = build_passages(config)
  embedder = Embedder(config.max_length, config.batch_size)
  digest = hashlib.sha256(json.dumps([passages, config.max_length]).encode()).hexdigest()[:16]
  cache = os.path.join(workdir, f"passage_embeddings_{digest}.npy")
  start = time.perf_counter()
  if os.path.exists(cache):
    docs_NxD = np.load(cache)
    print(f"loaded {len(passages)} passage embeddings from {cache}")
  else:
    docs_NxD = embedder([f"{title}. {text}" for title, text in passages], desc=f"embedding {len(passages)} passages")
    np.save(cache, docs_NxD)
  embed_s = time.perf_counter() - start

  quiz = capital_questions(config.max_quiz_questions)
  queries = list(config.queries) + [q for q, _ in quiz]
  query_QxD = embedder(queries)

  exact_topk = jax.jit(mips.exact_topk, static_argnames="k")
  jax.block_until_ready(exact_topk(jnp.asarray(query_QxD[:1]), jnp.asarray(docs_NxD), k=config.k))
  t0 = time.perf_counter()
  exact_scores, exact_idx = jax.block_until_ready(exact_topk(jnp.asarray(query_QxD), jnp.asarray(docs_NxD), k=config.k))
  exact_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  index = scann_index.ScannIndex.build(docs_NxD, config.k)
  build_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  _, scann_idx = index.search(query_QxD, config.k)
  scann_s = time.perf_counter() - t0
  exact_idx = np.asarray(exact_idx)

  for q, query in enumerate(config.queries):
    print(f"\nQ: {query}")
    for rank in range(3):
      title, text = passages[exact_idx[q, rank]]
      print(f"  {float(exact_scores[q, rank]):.3f}  [{title}] {text[:110]}")

  hits = 0
  for q, (_, answers) in enumerate(quiz):
    top = " ".join(passages[i][1].lower() for i in exact_idx[len(config.queries) + q, :5])
    hits += any(re.search(rf"\b{re.escape(a)}\b", top) for a in answers)
  summary = dict(
    passages=len(passages),
    queries=len(queries),
    embed_seconds=embed_s,
    exact_qps=len(queries) / exact_s,
    scann_build_seconds=build_s,
    scann_qps=len(queries) / scann_s,
    scann_recall_at_k=mips.recall_at_k(scann_idx, exact_idx),
    k=config.k,
    quiz_capital_questions=len(quiz),
    quiz_answer_in_top5=hits / max(1, len(quiz)),
  )
  print(
    f"\n{summary['passages']} passages, {summary['queries']} queries | exact {summary['exact_qps']:.0f} q/s | "
    f"ScaNN {summary['scann_qps']:.0f} q/s (build {build_s:.1f} s), recall@{config.k} vs exact "
    f"{summary['scann_recall_at_k']:.3f} | quiz capital answer in top-5: {hits}/{len(quiz)} "
    f"({summary['quiz_answer_in_top5']:.1%})"
  )
  for folder in filter(None, (workdir, config.results_dir)):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "core_demo_search.json"), "w") as f:
      json.dump({"command": "make demo", "jax": jax.__version__, **summary}, f, indent=1)
  return summary


if __name__ == "__main__":
  main_lib.run_main(run, validate, "configs/core/search_demo.py")
