"""Writes tests/core/golden/tiny_roberta/ (model.safetensors + config.json) and tiny_roberta_golden.npz.

A TINY random `transformers.RobertaModel` (Liu et al. 2019, RoBERTa, arXiv 1907.11692: BERT's encoder with
byte-level BPE, no segment embeddings (type_vocab_size 1) and learned positions offset by padding_idx + 1) and its
`last_hidden_state` for a [2, 8] batch: row 0 full, row 1 right-padded with pad id 1 (attention_mask 0 there).
`tests/core/test_roberta_import.py` checks that `core.bert_import.load_hf_bert` + `core.bert.BertEncoder` reproduce it.

Run with the reference environment (torch + transformers; no download, no tokenizer needed):
  python3.11 -m venv /work/.venv-ref && /work/.venv-ref/bin/pip install torch==2.13.0 transformers==5.23.0 \
      safetensors numpy
  /work/.venv-ref/bin/python tests/core/golden/make_roberta_golden.py
"""

import json
from pathlib import Path

import numpy as np
import torch
import transformers

HERE = Path(__file__).parent
PAD_ID = 1
INPUT_IDS = [
  [0, 17, 42, 5, 63, 9, 31, 2],  # <s> ... </s>, no padding
  [0, 8, 55, 21, 2, PAD_ID, PAD_ID, PAD_ID],  # right-padded
]


def main() -> None:
  torch.manual_seed(0)
  config = transformers.RobertaConfig(
    vocab_size=64,
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=32,
    max_position_embeddings=20,
    type_vocab_size=1,
    layer_norm_eps=1e-5,
    pad_token_id=PAD_ID,
    bos_token_id=0,
    eos_token_id=2,
    hidden_act="gelu",
  )
  model = transformers.RobertaModel(config, add_pooling_layer=False).eval()
  with torch.no_grad():  # default init leaves biases and LayerNorms at 0 / 1: randomise them so the import is tested
    for name, p in model.named_parameters():
      if name.endswith("bias") or "LayerNorm" in name:
        p.add_(0.1 * torch.randn_like(p))
  model_dir = HERE / "tiny_roberta"
  model.save_pretrained(model_dir, safe_serialization=True)
  for extra in model_dir.iterdir():
    if extra.name not in ("model.safetensors", "config.json"):
      extra.unlink()
  input_ids = torch.tensor(INPUT_IDS, dtype=torch.long)
  attention_mask = (input_ids != PAD_ID).long()
  with torch.no_grad():
    hidden = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.float()
  out = HERE / "tiny_roberta_golden.npz"
  np.savez_compressed(
    out,
    input_ids=input_ids.numpy().astype(np.int32),
    attention_mask=attention_mask.numpy().astype(np.int32),
    last_hidden_state=hidden.numpy().astype(np.float32),
  )
  saved = json.loads((model_dir / "config.json").read_text())
  sizes = {p.name: p.stat().st_size for p in [out, *model_dir.iterdir()]}
  print(f"wrote {sizes}; torch {torch.__version__}, transformers {transformers.__version__}")
  print(f"model_type {saved['model_type']}, max_position_embeddings {saved['max_position_embeddings']}")


if __name__ == "__main__":
  main()
