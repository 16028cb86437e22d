"""`LoraSpec`: which kernels get a low-rank update, with which rank, scaling, dropout and initialisation.

LoRA, Hu et al. 2021, arXiv 2106.09685 §4.1: h = W₀x + ΔWx with ΔW = (α/r)·BA, r ≪ min(d, k); rsLoRA (Kalajdzievski
2023) scales by α/√r instead. US 2022/0383126 claim 1, step 2 (the layers whose weight matrix W₀ gets a low-rank
factorisation BA, r ≪ d). Targets are regexes that must fully match a parameter path as `core.tree` names it
('layer_0/attention/query/kernel'); only `kernel` (Dense, DenseGeneral, Einsum, Conv) and `embedding` (Embed) leaves
of two or more axes are candidates, so a pattern that also matches a bias adapts only the kernel.

A kernel of n axes is factored as a matrix [prod(in axes), prod(out axes)]: its first `in_axes` axes are the module's
input (contracted) axes, the rest its output axes. Parameter-only code cannot see that split, so the spec states it;
`in_axes=None` (the default) means "all axes but the last", right for nn.Dense [in, out], nn.Conv [kh, kw, cin, cout]
and an nn.DenseGeneral contracting several axes into one feature axis (e.g. an attention output projection
[N, D, H] with axis=(-2, -1)). A kernel with several output axes (nn.DenseGeneral features=(N, D) gives [H, N, D];
an nn.Einsum 'blh,hnd->blnd') needs in_axes=1 on its pattern. `lora_jax.apply` checks the split against the module
it intercepts and names the pattern to fix when they differ.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Sequence
from typing import Any

INITS = ("kaiming", "gaussian")
KERNEL_NAMES = ("kernel", "embedding")


@dataclasses.dataclass(frozen=True)
class Rule:
  """One target pattern with its resolved rank, alpha and in_axes (None = all kernel axes but the last)."""

  pattern: str
  rank: int
  alpha: float
  in_axes: int | None


def _check_rank(value: Any, where: str) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise ValueError(f"{where} must be an int >= 1, got {value!r}")


def _check_alpha(value: Any, where: str) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
    raise ValueError(f"{where} must be a finite number > 0, got {value!r}")


def _check_in_axes(value: Any, where: str) -> None:
  if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
    raise ValueError(f"{where} must be None (all kernel axes but the last) or an int >= 1, got {value!r}")


@dataclasses.dataclass(frozen=True)
class LoraSpec:
  """What to adapt and how (Hu et al. 2021 §4.1; hashable, so it can be a static argument of `jax.jit`).

  Attributes:
    targets: a regex (full match over '/'-joined param paths), a sequence of regexes, or a sequence whose entries
      are regexes or tuples (regex, rank[, alpha[, in_axes]]) for per-pattern rank/alpha/in_axes; a None entry in a
      tuple takes the spec-wide value. The first pattern that matches a path decides. Stored as a tuple.
    rank: r of every pattern that does not set its own.
    alpha: α of every pattern that does not set its own.
    rslora: scaling α/√r (rank-stabilised LoRA) instead of α/r.
    dropout: dropout rate on the input of the low-rank branch only (loralib's `lora_dropout`).
    init: 'kaiming' (A ~ U(-1/√fan_in, 1/√fan_in), loralib's kaiming_uniform_(a=√5)) or 'gaussian' (A ~ N(0, 1/r²),
      std 1/r as peft's init_lora_weights='gaussian'); B = 0 either way (reversed for embeddings, see `lora.init`).
    in_axes: how many leading kernel axes are the module's input axes (None = all but the last); see the module
      docstring.
  """

  targets: Any
  rank: int = 8
  alpha: float = 16.0
  rslora: bool = False
  dropout: float = 0.0
  init: str = "kaiming"
  in_axes: int | None = None

  def __post_init__(self):
    _check_rank(self.rank, "LoraSpec.rank")
    _check_alpha(self.alpha, "LoraSpec.alpha")
    _check_in_axes(self.in_axes, "LoraSpec.in_axes")
    if not isinstance(self.rslora, bool):
      raise ValueError(f"LoraSpec.rslora must be a bool, got {self.rslora!r}")
    if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"LoraSpec.dropout must be a number in [0, 1), got {self.dropout!r}")
    if self.init not in INITS:
      raise ValueError(f"LoraSpec.init must be one of {INITS}, got {self.init!r}")
    object.__setattr__(self, "targets", _normalise_targets(self.targets))
    self.rules  # pylint: disable=pointless-statement  # validates every entry (and compiles its regex) now

  @functools.cached_property
  def rules(self) -> tuple[Rule, ...]:
    """The target patterns with rank/alpha/in_axes resolved against the spec-wide values."""
    rules = []
    for i, entry in enumerate(self.targets):
      entry = entry if isinstance(entry, tuple) else (entry,)
      pattern, rank, alpha, in_axes = (entry + (None, None, None))[:4]
      where = f"LoraSpec.targets[{i}]"
      rank = self.rank if rank is None else rank
      alpha = self.alpha if alpha is None else alpha
      in_axes = self.in_axes if in_axes is None else in_axes
      _check_rank(rank, f"{where} rank")
      _check_alpha(alpha, f"{where} alpha")
      _check_in_axes(in_axes, f"{where} in_axes")
      rules.append(Rule(pattern, rank, float(alpha), in_axes))
    return tuple(rules)

  def rule(self, path: str) -> Rule | None:
    """The first rule whose pattern fully matches `path` (a kernel/embedding path), or None."""
    if path.rsplit("/", 1)[-1] not in KERNEL_NAMES:
      return None
    for rule in self.rules:
      if _compiled(rule.pattern).fullmatch(path):
        return rule
    return None

  def scaling(self, path: str) -> float:
    """s = α/r, or α/√r with rslora, of the pattern that matches `path` (Hu et al. 2021 §4.1)."""
    rule = self.rule(path)
    if rule is None:
      raise ValueError(f"LoraSpec.scaling: no target pattern matches {path!r} (patterns {self.patterns()})")
    return rule.alpha / (math.sqrt(rule.rank) if self.rslora else rule.rank)

  def patterns(self) -> list[str]:
    return [rule.pattern for rule in self.rules]


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
  return re.compile(pattern)


def _normalise_targets(targets: Any) -> tuple[Any, ...]:
  """A tuple of regex strings and (regex, rank, alpha, in_axes) tuples; one-line ValueError on anything else."""
  if isinstance(targets, str):
    targets = (targets,)
  if not isinstance(targets, Sequence) or isinstance(targets, (bytes, bytearray)) or not targets:
    raise ValueError(f"LoraSpec.targets must be a regex or a non-empty list of regexes / tuples, got {targets!r}")
  out = []
  for i, entry in enumerate(targets):
    if isinstance(entry, (list, tuple)) and not isinstance(entry, str):
      entry = tuple(entry)
      if not 1 <= len(entry) <= 4:
        raise ValueError(f"LoraSpec.targets[{i}] must be (regex, rank[, alpha[, in_axes]]), got {entry!r}")
      pattern = entry[0]
    else:
      pattern = entry
    if not isinstance(pattern, str):
      raise ValueError(f"LoraSpec.targets[{i}] regex must be a str, got {pattern!r}")
    try:
      _compiled(pattern)
    except re.error as e:
      raise ValueError(f"LoraSpec.targets[{i}] is not a valid regex ({e}): {pattern!r}") from None
    out.append(entry)
  return tuple(out)
