"""The paper's GLUE setting (Hu et al. 2021 §5.1, Appendix D Table 9): LoRA on Wq, Wv of RoBERTa-base/large.

Command (an accelerator; GLUE via tfds or task.data_dir=GLUE TSV dir; init_checkpoint: a BERT-family directory with
model.safetensors + config.json + vocab.txt, or any checkpoint `core.pretrained` reads):
  python -m lora_jax.finetune --config=configs/lora/glue.py:task=sst2,size=base --config.init_checkpoint=DIR \
      --workdir=W
Args: task = mnli sst2 mrpc cola qnli qqp rte stsb; size = base | large; method = lora | full.
Table 9 (RoBERTa-base, LoRA): AdamW, linear schedule, warmup ratio 0.06, batch 16, max length 512, r = 8, α = 16 on
  query/value; epochs / LR: MNLI 30 / 5e-4, SST-2 60 / 5e-4, MRPC 30 / 4e-4, CoLA 80 / 4e-4, QNLI 25 / 4e-4, QQP
  25 / 5e-4, RTE 80 / 5e-4, STS-B 40 / 4e-4. RoBERTa-large: batch 4 (MNLI, QNLI, QQP 4; others 4-8), max length 128
  (512 for some tasks in the paper's table), epochs 10-20, LR 2e-4-4e-4 (values below, microsoft/LoRA
  examples/NLU/roberta_large_*.sh). Weight decay 0.1 (loralib examples). Reported (Table 2, dev): RoBERTa-base LoRA
  87.2 avg (full finetuning 86.4), RoBERTa-large LoRA 89.0 (full 88.9).
init_checkpoint: a HuggingFace RoBERTa directory (model.safetensors + config.json + tokenizer.json or vocab.json +
  merges.txt): `core.bert_import` maps RoBERTa's weights (positions offset by padding_idx + 1 dropped at import) and
  the runner tokenizes with its byte-level BPE (`core.data.tokenizers.ByteLevelBpeTokenizer`, <s> A </s></s> B </s>).
"""

from configs.lora import common
from core import config as config_lib

BASE = {  # task: (epochs, lr)
  "mnli": (30, 5e-4), "sst2": (60, 5e-4), "mrpc": (30, 4e-4), "cola": (80, 4e-4),
  "qnli": (25, 4e-4), "qqp": (25, 5e-4), "rte": (80, 5e-4), "stsb": (40, 4e-4),
}  # fmt: skip
LARGE = {  # task: (epochs, lr, batch, max_seq_length)
  "mnli": (10, 3e-4, 4, 128), "sst2": (10, 4e-4, 4, 128), "mrpc": (20, 3e-4, 4, 512), "cola": (20, 2e-4, 4, 128),
  "qnli": (10, 2e-4, 4, 512), "qqp": (20, 3e-4, 4, 512), "rte": (20, 4e-4, 8, 512), "stsb": (10, 2e-4, 8, 512),
}  # fmt: skip
SHAPES = {"base": dict(hidden=768, layers=12, heads=12, intermediate=3072),
          "large": dict(hidden=1024, layers=24, heads=16, intermediate=4096)}  # fmt: skip
FULL_LR = {"base": 2e-5, "large": 1e-5}  # full finetuning (RoBERTa paper, Table 10 range)


def get_config(arg: str | None = None):
  arg = config_lib.parse_arg(arg, task="sst2", size="base", method="lora")
  for field, allowed in (("task", BASE), ("size", SHAPES), ("method", ("lora", "full"))):
    if arg[field] not in allowed:
      raise config_lib.ConfigError(
        f"config arg {field}: unknown value {arg[field]!r} (allowed: {', '.join(allowed)})"
      )
  if arg.size == "base":
    (epochs, lr), batch, max_len = BASE[arg.task], 16, 512
  else:
    epochs, lr, batch, max_len = LARGE[arg.task]
  model = common.encoder(
    **SHAPES[arg.size], vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5
  )
  config = common.base_config(
    task=arg.task, init_checkpoint="", model=model, max_seq_length=max_len, epochs=epochs, seeds=5,
    batch_size=batch, peak_lr=lr if arg.method == "lora" else FULL_LR[arg.size], weight_decay=0.1,
    warmup_fraction=0.06, method=arg.method, targets="query_value", rank=8, alpha=16.0,
  )  # fmt: skip
  config.finetune.double_unordered = False
  return config
