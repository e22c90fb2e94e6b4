"""What each text field of a wire message accepts, and the refusal in words when it does not.

A value that reaches the store is shown on terminals, in CSV exports and on the review
pages, so the intake refuses characters that would hide or reorder what a screen shows:

| field | accepts |
| --- | --- |
| slugs: `site`, `line`, `station`, `adapter` | 1-64 of `a-z`, `0-9`, `-`; not `-` first |
| `part_id` | 1-128 characters of any script, spaces included |
| `operator` | 1-64 characters of any script, spaces included |
| `note` | up to `limits.max_note_chars` characters; newlines and tabs allowed |
| `sha256` | 64 lowercase hex digits |

No text field accepts a control character (C0, DEL, C1 such as U+0085 NEL and U+009B CSI),
a line or paragraph separator (U+2028, U+2029), a bidirectional embedding, override or
isolate (U+202A-U+202E, U+2066-U+2069), a zero-width or other invisible formatting
character (U+200B, U+200E, U+200F, U+FEFF, ...) or an unpaired surrogate; the exceptions are
the newline and tab in a note, and the zero-width non-joiner and joiner (U+200C, U+200D)
between two visible characters, which emoji sequences and Indic and Persian text need.
Such a value is refused with `payload.unsafe_text`, naming the character by its code point
and position, never echoing it. `inspector.safetext` holds the
character rule, shared with the screens.

Every check raises a `PydanticCustomError` whose type is the refusal's `Code` value and
whose message says what is wrong without the field name; the parser prefixes the field.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, ValidationInfo, WithJsonSchema
from pydantic_core import PydanticCustomError

from inspector.errors import Code
from inspector.safetext import first_unsafe, visible
from inspector.settings import LimitSettings

SLUG_MAX = 64
PART_ID_MAX = 128
OPERATOR_MAX = 64
NOTE_ALLOWS = "\n\t"
_SLUG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_HEX = frozenset("0123456789abcdef")


def limits_of(info: ValidationInfo) -> LimitSettings:
    """The limits a parse was given in its validation context (the defaults without one)."""
    limits = (info.context or {}).get("limits")
    return limits if isinstance(limits, LimitSettings) else LimitSettings()


def shown(value: object, limit: int = 40) -> str:
    """A short, visible rendering of an untrusted value for a refusal message."""
    text = visible(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _invalid(message: str, **context: Any) -> PydanticCustomError:
    return PydanticCustomError(Code.PAYLOAD_INVALID.value, message, context or None)


def _unsafe_check(value: str, allow: str = "") -> None:
    bad = first_unsafe(value, allow)
    if bad is not None:
        raise PydanticCustomError(
            Code.PAYLOAD_UNSAFE_TEXT.value, "contains {what}", {"what": bad.describe()}
        )


def _length_check(value: str, max_chars: int, min_chars: int = 1) -> None:
    if len(value) < min_chars:
        raise _invalid("is empty")
    if len(value) > max_chars:
        raise _invalid(
            "is longer than {limit} characters ({count})", limit=max_chars, count=len(value)
        )


def check_slug(value: str) -> str:
    """A slug: 1-64 of a-z, 0-9 and '-', not starting with '-'."""
    _length_check(value, SLUG_MAX)
    _unsafe_check(value)
    for position, ch in enumerate(value, 1):
        if ch not in _SLUG_CHARS:
            what = "an uppercase letter" if ch.isupper() else "the character"
            raise _invalid(
                "contains {what} {char} at position {position}; use only lowercase letters "
                "a-z, digits and '-'",
                what=what,
                char=repr(ch),
                position=position,
            )
    if value.startswith("-"):
        raise _invalid("starts with '-'; start with a lowercase letter or a digit")
    return value


def check_sha256(value: str) -> str:
    """A sha256 written as 64 lowercase hex digits."""
    if len(value) != 64 or not set(value) <= _HEX:
        upper = len(value) == 64 and set(value.lower()) <= _HEX
        raise _invalid(
            "is not a lowercase sha256 hex ({detail}); write it as 64 digits 0-9a-f",
            detail="it has uppercase letters" if upper else f"{len(value)} characters",
        )
    return value


def text_rule(max_chars: int, allow: str = "") -> AfterValidator:
    """A shown text field: 1 to `max_chars` characters, none of them unsafe (but `allow`)."""

    def check(value: str) -> str:
        _length_check(value, max_chars)
        _unsafe_check(value, allow)
        return value

    return AfterValidator(check)


def check_note(value: str, info: ValidationInfo) -> str:
    """An operator note: up to the site's note limit; newlines and tabs allowed."""
    _length_check(value, limits_of(info).max_note_chars, min_chars=0)
    _unsafe_check(value, NOTE_ALLOWS)
    return value


def _schema(**fields: Any) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", **fields})


Slug = Annotated[
    str,
    AfterValidator(check_slug),
    _schema(pattern=f"^[a-z0-9][a-z0-9-]{{0,{SLUG_MAX - 1}}}$"),
]
Sha256Hex = Annotated[str, AfterValidator(check_sha256), _schema(pattern="^[0-9a-f]{64}$")]
PartId = Annotated[str, text_rule(PART_ID_MAX), _schema(minLength=1, maxLength=PART_ID_MAX)]
OperatorName = Annotated[str, text_rule(OPERATOR_MAX), _schema(minLength=1, maxLength=OPERATOR_MAX)]
NoteText = Annotated[str, AfterValidator(check_note), _schema()]
