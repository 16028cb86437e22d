"""Pretraining FLOPs of ELECTRA and its MLM twin, counted as ELECTRA's `flops_computation.py` does, to match runs
on compute.

Clark et al. 2020 §3.4 and Table 1 (the "Train FLOPs" column: ELECTRA-Small 1.4e18 for 1M steps, BERT-Small given
1.45M steps to match) and Appendix D. Not a patent step (the patent does not count compute).

The encoder and MLM-head counts (and both conventions: every operation, or matmuls only) are `core.flops`'s; this
module adds what is ELECTRA's:
- the discriminator head dense(h) -> GELU -> dense(1): 2·h² + h, GELU 8h, logit 2h;
- the composition ELECTRA = discriminator (with its head) + generator (with the MLM head, its embedding lookup
  counted separately although the tables are tied, as the reference does), and the MLM twin with the
  discriminator's config (reference `get_electra_train_flops` / `get_train_flops`);
- the reference's share of tokens with an output softmax, 0.15625 (our models also run the head only on the masked
  positions), and its backward factor 1.0 (training = 2 × forward).
With these rules ELECTRA-Small at 1M × 128 × 128 is 1.29e18 and BERT-Small at 1.45M steps 1.42e18 (the paper rounds
both to 1.4e18).
"""

from __future__ import annotations

from core import bert as bert_lib
from core import flops as core_flops
from core.flops import TransformerShape

REFERENCE_OUTPUT_FRAC = 0.15625  # flops_computation.py's share of tokens with an output softmax (80 / 512)


def discriminator_head_flops(t: TransformerShape, *, matmul_only: bool = False) -> float:
  """Forward FLOPs per token of the replaced-token-detection head dense(h) → GELU → dense(1) (§2, reference code)."""
  h = t.hidden
  if matmul_only:
    return float(2 * h * h + 2 * h)
  return float(2 * h * h + h + core_flops.ACTIVATION_FLOPS * h + 2 * h)


def discriminator_train_flops(
  t: TransformerShape, batch_size: int, steps: float = 1, *, backward_factor: float = 1.0, matmul_only: bool = False
) -> float:
  """Training FLOPs of the discriminator alone (encoder + head over every token)."""
  forward = core_flops.encoder_flops(t, matmul_only=matmul_only) + discriminator_head_flops(t, matmul_only=matmul_only)
  return core_flops.train_flops(forward, batch_size, t.seq_len, steps, backward_factor=backward_factor)


def pretrain_flops_per_step(
  objective: str,
  disc_config: bert_lib.BertConfig,
  batch_size: int,
  seq_len: int,
  gen_config: bert_lib.BertConfig | None = None,
  *,
  output_frac: float = REFERENCE_OUTPUT_FRAC,
  backward_factor: float = 1.0,
) -> float:
  """Training FLOPs of one optimizer step: 'electra' (generator + discriminator, reference
  `get_electra_train_flops`) or 'mlm' (the BERT twin with the discriminator's config, reference `get_train_flops`)."""
  disc = TransformerShape.from_bert_config(disc_config, seq_len)
  mlm = dict(output_frac=output_frac, backward_factor=backward_factor)
  if objective == "mlm":
    return core_flops.mlm_train_flops(disc, batch_size, **mlm)
  if objective != "electra":
    raise ValueError(f"objective must be 'electra' or 'mlm', got {objective!r}")
  if gen_config is None:
    raise ValueError("objective 'electra' needs the generator config")
  gen = TransformerShape.from_bert_config(gen_config, seq_len)
  return discriminator_train_flops(disc, batch_size, backward_factor=backward_factor) + core_flops.mlm_train_flops(
    gen, batch_size, **mlm
  )


def compute_matched_steps(target_flops: float, flops_per_step: float) -> int:
  """Steps a run needs to spend `target_flops` (e.g. the MLM twin of an ELECTRA run), rounded to the nearest step."""
  if flops_per_step <= 0:
    raise ValueError(f"flops_per_step must be > 0, got {flops_per_step!r}")
  return round(target_flops / flops_per_step)
