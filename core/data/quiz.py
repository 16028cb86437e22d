"""Parser for bsdgames quiz(6) index and data files.

Syntax (quiz(6)): fields are separated by ':'; in a field `a|b` are alternatives, `{x}` is optional,
`[x|y]` groups alternatives, `\\c` quotes a character and a trailing `\\` continues the line. A field
expands to the list of strings it accepts; the canonical form keeps every optional part and the first
alternative ("{G{eorge} }Washington" -> "George Washington"; accepted also "Washington", "G Washington").
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

MAX_ALTERNATIVES = 64


@dataclasses.dataclass(frozen=True)
class QuizRecord:
  """One question/answer pair: column 0 of a data line asked, column j answered."""

  subject: str  # data file name, e.g. 'state'
  question_field: str  # canonical column title, e.g. 'state'
  answer_field: str  # e.g. 'capital'
  question: str
  answer: str
  question_alternatives: tuple[str, ...]
  answer_alternatives: tuple[str, ...]

  @property
  def category(self) -> str:
    return f"{self.subject}:{self.answer_field}"


class _Parser:
  """Recursive-descent expansion of one field into its accepted strings."""

  def __init__(self, text: str):
    self.text = text
    self.pos = 0

  def parse(self) -> list[str]:
    out = self._alternatives(closing="")
    if self.pos != len(self.text):
      raise ValueError(f"unbalanced quiz pattern {self.text!r}")
    return out

  def _alternatives(self, closing: str) -> list[str]:
    options = self._sequence(closing)
    while self.pos < len(self.text) and self.text[self.pos] == "|":
      self.pos += 1
      options = options + self._sequence(closing)
    return _dedupe(options)

  def _sequence(self, closing: str) -> list[str]:
    pieces: list[list[str]] = []
    literal: list[str] = []
    while self.pos < len(self.text):
      ch = self.text[self.pos]
      if ch == "|" or (closing and ch == closing):
        break
      if ch in "}]" and not closing:
        raise ValueError(f"unbalanced quiz pattern {self.text!r}")
      if ch in "}]":  # the other bracket type closes an enclosing group: malformed
        raise ValueError(f"mismatched bracket in quiz pattern {self.text!r}")
      self.pos += 1
      if ch == "\\" and self.pos < len(self.text):
        literal.append(self.text[self.pos])
        self.pos += 1
      elif ch in "{[":
        if literal:
          pieces.append(["".join(literal)])
          literal = []
        close = "}" if ch == "{" else "]"
        inner = self._alternatives(closing=close)
        if self.pos >= len(self.text) or self.text[self.pos] != close:
          raise ValueError(f"unclosed {ch!r} in quiz pattern {self.text!r}")
        self.pos += 1
        pieces.append(inner + [""] if ch == "{" else inner)
      else:
        literal.append(ch)
    if literal:
      pieces.append(["".join(literal)])
    combos = itertools.islice(itertools.product(*pieces), MAX_ALTERNATIVES * 4)
    return _dedupe("".join(c) for c in combos)


def _dedupe(items) -> list[str]:
  seen: dict[str, None] = {}
  for item in items:
    if len(seen) >= MAX_ALTERNATIVES:
      break
    seen.setdefault(item, None)
  return list(seen)


def expand(field: str) -> list[str]:
  """All strings a quiz field accepts (canonical first, at most MAX_ALTERNATIVES); [] for empty."""
  if not field.strip():
    return []
  try:
    expansions = _Parser(field).parse()
  except ValueError:  # a few data lines have unbalanced brackets: drop the bracket characters
    flat = "".join(ch for ch in field.replace("\\", "") if ch not in "{}[]")
    expansions = _dedupe([flat.split("|", 1)[0]] + flat.split("|"))
  return _dedupe(s.strip() for s in expansions if s.strip())


def split_fields(line: str) -> list[str]:
  """Splits a line at ':' not quoted by a backslash (the quote is kept for `expand`)."""
  fields, current, i = [], [], 0
  while i < len(line):
    ch = line[i]
    if ch == "\\" and i + 1 < len(line):
      current.append(line[i : i + 2])
      i += 2
      continue
    if ch == ":":
      fields.append("".join(current))
      current = []
    else:
      current.append(ch)
    i += 1
  fields.append("".join(current))
  return fields


def logical_lines(text: str) -> list[str]:
  """Joins lines ending in an unquoted backslash with the following line."""
  out, pending = [], ""
  for raw in text.splitlines():
    trailing = len(raw) - len(raw.rstrip("\\"))
    if trailing % 2 == 1:
      pending += raw[:-1]
      continue
    line = pending + raw
    pending = ""
    if line.strip():
      out.append(line)
  if pending.strip():
    out.append(pending)
  return out


def read_quiz_dir(quiz_dir: Path) -> list[QuizRecord]:
  """Reads `index` and every data file it names (paths taken relative to `quiz_dir`)."""
  records: list[QuizRecord] = []
  for index_line in logical_lines((quiz_dir / "index").read_text(encoding="latin-1")):
    path_field, *title_fields = split_fields(index_line)
    subject = Path(path_field).name
    titles = [(expand(t) or [t])[0] for t in title_fields]
    for line in logical_lines((quiz_dir / subject).read_text(encoding="latin-1")):
      fields = split_fields(line)
      questions = expand(fields[0])
      if not questions:
        continue
      for column in range(1, min(len(fields), len(titles))):
        answers = expand(fields[column])
        if not answers:  # quiz(6) does not ask questions with an empty answer
          continue
        records.append(
          QuizRecord(
            subject=subject,
            question_field=titles[0],
            answer_field=titles[column],
            question=questions[0],
            answer=answers[0],
            question_alternatives=tuple(questions),
            answer_alternatives=tuple(answers),
          )
        )
  return records
