"""`make demo`: MiniLM-L6 semantic search over bundled WordNet glosses + Wikipedia passages (core.demo).

Command:
  python -m core.demo --config=configs/core/search_demo.py --workdir=workdirs/demo
Expected: ScaNN recall@10 vs exact search >= 0.95; the quiz answer to "What is the capital of X?" in the top 5
  for about 0.7 of questions (offline_data.md measured 0.73 on a similar set); numbers of our run in README.
Runtime: embedding the 6,000 passages takes 1-2 minutes on 2 CPU cores (cached in the workdir afterwards).
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  return ml_collections.ConfigDict(
    dict(
      seed=0,
      passages=6_000,  # total passages: Wikipedia share + WordNet noun glosses
      wikipedia_share=0.25,
      max_length=128,
      batch_size=64,
      k=10,
      max_quiz_questions=400,
      results_dir="results",  # also write core_demo_search.json here ('' to skip)
      queries=(
        "What is the capital of Kenya?",
        "a large carnivorous feline with a mane",
        "anarchism as a political philosophy",
        "how do planets reflect sunlight",
      ),
    )
  )
