"""Untrusted text made safe to show, one helper per medium.

Part ids, notes, operator names, rationales, transcripts, defect names and reviewer comments
come from stations and models. Shown raw, a control character moves the cursor or opens an
OSC hyperlink, a bidi override reorders a line (``P-\\u202eLIAF\\u202c`` displays as
"P-FAIL"), and rich markup in a part id restyles or crashes a screen. So every screen goes
through one of these:

- :func:`terminal` for text printed with rich markup (``console.print``, table cells);
- :func:`visible` for rich ``Text`` objects and other plain-text screens (no markup parsed);
- :func:`csv_cell` for CSV exports (spreadsheets evaluate ``=``, ``+``, ``-``, ``@``);
- :func:`json_line` for JSON Lines exports (exact data, unsafe characters as JSON escapes);
- HTML pages use Jinja2 autoescape, with :func:`visible` as a filter where bidi matters.

:func:`first_unsafe` is the same character rule as a check, for the intake's field rules.
This module imports nothing beyond the standard library and rich, so edge, CLI and the
review app can all use it.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from rich.markup import escape as _escape_markup

# Every character that is not printable ASCII is looked at; most (letters, CJK) stay.
_NOT_ASCII_PRINTABLE = re.compile(r"[^\x20-\x7e]")

# Cc: C0 and C1 controls (U+0085 and the CSI/OSC introducers U+009B/U+009D among them);
# Cf: format characters (bidi embeddings, overrides and isolates, zero-width joiners, BOM);
# Cs: lone surrogates, which cannot even be encoded for output; Zl/Zp: U+2028 and U+2029.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})

# ZERO WIDTH NON-JOINER and JOINER are part of ordinary text: emoji sequences (family, flags
# of professions) and Indic and Persian spelling need them between two visible characters.
# Anywhere else (first, last, doubled, beside a space) they only hide something.
JOINERS = frozenset("\u200c\u200d")

_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

# Cells starting with these are formulas to Excel, LibreOffice and Google Sheets.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def is_unsafe(ch: str) -> bool:
    """True for a character that must never reach a screen as it is (joiners: see `joins`)."""
    return unicodedata.category(ch) in _UNSAFE_CATEGORIES


def _shows(ch: str) -> bool:
    return not ch.isspace() and ch not in JOINERS and not is_unsafe(ch)


def joins(text: str, index: int) -> bool:
    """True when `text[index]` is a ZWNJ or ZWJ between two visible characters."""
    return (
        text[index] in JOINERS
        and 0 < index < len(text) - 1
        and _shows(text[index - 1])
        and _shows(text[index + 1])
    )


def _unsafe_at(text: str, index: int) -> bool:
    return is_unsafe(text[index]) and not joins(text, index)


def escape_char(ch: str) -> str:
    """A visible, unambiguous spelling of one character: ``\\x1b``, ``\\u202e``, ``\\U000e0001``."""
    cp = ord(ch)
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def describe_char(ch: str) -> str:
    """What kind of character this is, in words, with its code point (never the raw character)."""
    cp = f"U+{ord(ch):04X}"
    category = unicodedata.category(ch)
    if ch in _BIDI:
        kind = "a bidirectional formatting character"
    elif category == "Cc":
        kind = "a control character"
    elif category == "Cs":
        kind = "an unpaired surrogate"
    elif category in ("Zl", "Zp"):
        kind = "a line or paragraph separator"
    elif ch in JOINERS:
        kind = "a zero-width joiner or non-joiner that joins no two visible characters"
    elif category == "Cf":
        kind = "an invisible formatting character"
    else:
        kind = "a character"
    return f"{kind} ({cp})"


def _replace(text: str, keep: str) -> str:
    if text.isascii() and text.isprintable():
        return text  # the common case, without the regex: printable ASCII is all safe

    def one(match: re.Match[str]) -> str:
        ch = match.group()
        return escape_char(ch) if ch not in keep and _unsafe_at(text, match.start()) else ch

    return _NOT_ASCII_PRINTABLE.sub(one, text)


def visible(text: object, *, multiline: bool = False) -> str:
    """`text` with every control, format and separator character spelled as a visible escape.

    With `multiline`, newlines are kept as line breaks (notes, rationales in a detail view).
    """
    return _replace(str(text), "\n" if multiline else "")


EXCERPT_CHARS = 64


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """A quoted, escaped, bounded excerpt of an untrusted value for a message.

    At most `limit` characters as shown (escapes included, never cut in half), then "…" and
    the value's length: ``'OsakaOsaka…' (10309 characters)``. A reason never repeats a
    10 KB station name, and never carries the character it refuses.
    """
    text = str(value)
    out: list[str] = []
    used = 0
    for index, ch in enumerate(text):
        piece = escape_char(ch) if _unsafe_at(text, index) else ch
        if used + len(piece) > limit:
            return f"'{''.join(out)}…' ({len(text)} characters)"
        out.append(piece)
        used += len(piece)
    return f"'{''.join(out)}'"


def terminal(text: object, *, multiline: bool = False) -> str:
    """`text` for rich markup output: unsafe characters escaped visibly, markup escaped."""
    return _escape_markup(visible(text, multiline=multiline))


def csv_cell(value: object) -> str:
    """One CSV cell: text shown safely and never evaluated as a spreadsheet formula.

    Numbers stay numbers (a negative confidence is not a formula); text starting with a
    formula character gets a leading apostrophe, which spreadsheets hide and do not evaluate.
    """
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return str(value)
    text = str(value)
    if text.startswith(_FORMULA_START):
        text = "'" + text
    if text.isascii() and text.isprintable():
        return text  # most cells: nothing to escape (an export makes hundreds of thousands)
    return visible(text, multiline=True)


def _json_escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch == "\n" or not is_unsafe(ch) or joins(match.string, match.start()):
        return ch
    cp = ord(ch)
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    cp -= 0x10000
    return f"\\u{0xD800 + (cp >> 10):04x}\\u{0xDC00 + (cp & 0x3FF):04x}"


def json_line(obj: Any, *, indent: int | None = None) -> str:
    """`obj` as JSON: readable UTF-8, but unsafe characters as ``\\uXXXX`` escapes.

    One line by default; with `indent`, pretty-printed for a terminal (print it with markup
    off). The data round-trips exactly through any JSON parser; only the bytes are safe to
    `cat` on a terminal.
    """
    # Unsafe characters can only occur inside JSON strings, where \\uXXXX is their spelling.
    # json.dumps escapes newlines in strings, so a raw one is the indentation's own.
    return _NOT_ASCII_PRINTABLE.sub(
        _json_escape, json.dumps(obj, ensure_ascii=False, indent=indent)
    )


@dataclass(frozen=True, slots=True)
class UnsafeChar:
    """The first character a field does not accept: where it is (1-based) and what it is."""

    position: int
    char: str

    def describe(self) -> str:
        """E.g. "a bidirectional formatting character (U+202E) at position 3"."""
        return f"{describe_char(self.char)} at position {self.position}"


def first_unsafe(text: str, allow: str = "") -> UnsafeChar | None:
    """The first character of `text` that must not be stored in a shown field, if any."""
    for match in _NOT_ASCII_PRINTABLE.finditer(text):
        ch = match.group()
        if ch not in allow and _unsafe_at(text, match.start()):
            return UnsafeChar(match.start() + 1, ch)
    return None
