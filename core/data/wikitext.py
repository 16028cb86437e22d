"""MediaWiki XML dump reading and wiki-markup stripping (regex based, good enough for a small corpus)."""

from __future__ import annotations

import bz2
import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

# Sections after which an article holds only references and links.
_TRAILING_SECTIONS = frozenset(
  {
    "references",
    "external links",
    "see also",
    "further reading",
    "notes",
    "bibliography",
    "sources",
    "footnotes",
    "notes and references",
    "citations",
    "works cited",
  }
)
# Link namespaces whose targets are not running text.
_DROPPED_LINK_PREFIXES = frozenset(
  {
    "file",
    "image",
    "media",
    "category",
    "wikipedia",
    "wp",
    "help",
    "template",
    "portal",
    "special",
    "talk",
    "user",
    "wikt",
    "wiktionary",
  }
)
_DROPPED_ELEMENTS = (
  "ref",
  "gallery",
  "math",
  "timeline",
  "imagemap",
  "score",
  "syntaxhighlight",
  "source",
  "chem",
  "ce",
  "graph",
  "mapframe",
  "references",
  "hiero",
  "poem",
)

_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_SELF_CLOSING = re.compile(r"<(?:%s)\b[^>]*/>" % "|".join(_DROPPED_ELEMENTS), re.IGNORECASE)
_DROPPED_BLOCKS = re.compile(r"<(%s)\b[^>]*>.*?</\1\s*>" % "|".join(_DROPPED_ELEMENTS), re.IGNORECASE | re.DOTALL)
_LINE_BREAK_TAG = re.compile(r"<br\s*/?>", re.IGNORECASE)
_HTML_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*\b[^<>]*/?>")
_INNER_TEMPLATE = re.compile(r"\{\{(?:(?!\{\{|\}\}).)*\}\}", re.DOTALL)
_INNER_TABLE = re.compile(r"\{\|(?:(?!\{\||\|\}).)*\|\}", re.DOTALL)
_INNER_LINK = re.compile(r"\[\[((?:[^\[\]]|\[(?!\[)|\](?!\]))*)\]\]")  # may hold single [ ]
_EXTERNAL_LINK = re.compile(r"\[(?:https?:|ftp:|mailto:|//)[^\s\]]*(?:\s+([^\]]*))?\]")
_BARE_URL = re.compile(r"https?://\S+")
_HEADING = re.compile(r"^(={2,6})\s*(.*?)\s*\1\s*$", re.MULTILINE)
_BOLD_ITALIC = re.compile(r"'{2,5}")
_MAGIC_WORD = re.compile(r"__[A-Z]+__")
_LIST_MARKER = re.compile(r"^[*#:;]+\s*", re.MULTILINE)
_HORIZONTAL_RULE = re.compile(r"^-{4,}\s*$", re.MULTILINE)
_SPACES = re.compile(r"[ \t\u00a0]+")
_SPACE_BEFORE_PUNCT = re.compile(r" +([,.;:!?)\]])")
_EMPTY_PARENS = re.compile(r"\(\s*[,;]?\s*\)")
_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(?:-[a-z]+)?$")


def _replace_until_stable(pattern: re.Pattern[str], repl, text: str) -> str:
  while True:
    new = pattern.sub(repl, text)
    if new == text:
      return text
    text = new


def _link_text(match: re.Match[str]) -> str:
  body = match.group(1)
  target, _, label = body.partition("|")
  prefix, colon, _ = target.partition(":")
  prefix = prefix.strip().lower()
  if colon and (prefix in _DROPPED_LINK_PREFIXES or _LANGUAGE_CODE.match(prefix)):
    return ""
  if target.startswith(":"):  # [[:Category:X]] style inline link
    target = target[1:]
  text = label.rsplit("|", 1)[-1] if label else target
  return text.split("#", 1)[0] if not label and "#" in text else text


def _keep_heading(match: re.Match[str]) -> str:
  return "\n" + match.group(2) + "\n"


def strip_markup(wikitext: str) -> str:
  """Converts wikitext to plain paragraphs joined by newlines.

  Drops comments, references, templates (nested), tables (nested), file/category/interlanguage links
  and the trailing References / External links / See also sections; keeps link labels, heading text
  and list items without their markers.
  """
  text = _COMMENT.sub("", wikitext)
  text = _SELF_CLOSING.sub("", text)
  text = _DROPPED_BLOCKS.sub("", text)
  text = _replace_until_stable(_INNER_TEMPLATE, "", text)
  text = _replace_until_stable(_INNER_TABLE, "", text)
  text = _replace_until_stable(_INNER_LINK, _link_text, text)
  text = _EXTERNAL_LINK.sub(lambda m: m.group(1) or "", text)
  text = _BARE_URL.sub("", text)
  # Cut at the first trailing (reference-only) section.
  for m in _HEADING.finditer(text):
    if m.group(2).strip().lower() in _TRAILING_SECTIONS:
      text = text[: m.start()]
      break
  text = _HEADING.sub(_keep_heading, text)
  text = _LINE_BREAK_TAG.sub(" ", text)
  text = _HTML_TAG.sub("", text)
  text = html.unescape(text)
  text = _HTML_TAG.sub("", text)  # tags that were entity-escaped in the source
  text = _BOLD_ITALIC.sub("", text)
  text = _MAGIC_WORD.sub("", text)
  text = _HORIZONTAL_RULE.sub("", text)
  text = _LIST_MARKER.sub("", text)
  text = text.replace("{{", "").replace("}}", "").replace("[[", "").replace("]]", "")
  paragraphs = []
  for line in text.split("\n"):
    line = _SPACES.sub(" ", line).strip()
    line = _EMPTY_PARENS.sub("", line)
    line = _SPACE_BEFORE_PUNCT.sub(r"\1", _SPACES.sub(" ", line)).strip()
    if len(line) > 1 and any(ch.isalnum() for ch in line) and not line.startswith(("|", "!")):
      paragraphs.append(line)
  return "\n".join(paragraphs)


def iter_pages(xml_bz2: Path) -> Iterator[tuple[str, str]]:
  """Yields (title, wikitext) for main-namespace, non-redirect pages of a MediaWiki XML dump."""
  with bz2.open(xml_bz2, "rb") as stream:
    for _, elem in ET.iterparse(stream, events=("end",)):
      if not elem.tag.endswith("}page") and elem.tag != "page":
        continue
      ns = title = wikitext = None
      redirect = False
      for child in elem.iter():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "ns":
          ns = child.text
        elif tag == "title":
          title = child.text
        elif tag == "redirect":
          redirect = True
        elif tag == "text":
          wikitext = child.text or ""
      elem.clear()
      if ns != "0" or redirect or title is None or wikitext is None:
        continue
      if wikitext.lstrip()[:9].upper() == "#REDIRECT":
        continue
      yield title, wikitext


def passages(text: str, words: int = 100) -> list[str]:
  """Splits text into consecutive chunks of `words` whitespace-separated words (last one shorter)."""
  if words <= 0:
    raise ValueError(f"words must be positive, got {words}")
  tokens = text.split()
  return [" ".join(tokens[i : i + words]) for i in range(0, len(tokens), words)]
