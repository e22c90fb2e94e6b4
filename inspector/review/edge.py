"""What the app refuses before anything reaches the store: values a database cannot hold.

PostgreSQL's text types cannot hold U+0000, and no UTF-8 database can hold a lone surrogate
(JSON can spell one, ``"\\ud800"``); SQLite keeps NUL but cuts text at it when reading. Such
a character in any query parameter, form field or JSON string is refused here as a 422 that
names the field, so the store never sees it. Days are bounded too: a day at the edge of
what Python's dates can hold (9999-12-31) overflows when the app adds the day that makes
"until" inclusive, and nobody inspected a part in year 1.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from typing import Annotated

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator

FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9998, 12, 31)
# Query parameters that are days (YYYY-MM-DD) or a month (YYYY-MM) wherever they appear.
DAY_FIELDS = frozenset({"since", "until"})
MONTH_FIELD = "month"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_MONTH = re.compile(r"\d{4}-\d{2}")


def unstorable(text: str) -> str | None:
    """Why a database cannot hold `text` (the first offending character), or None."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    return f"holds U+{ord(found.group()):04X}, a character the database cannot store"


def safe_text(text: str) -> str:
    """A pydantic validator: the text unchanged, or a ValueError naming the character."""
    problem = unstorable(text)
    if problem is not None:
        raise ValueError(problem)
    return text


SafeText = Annotated[str, AfterValidator(safe_text)]


def day_problem(value: str) -> str | None:
    """Why a YYYY-MM-DD day is out of range (None when fine or not a day at all)."""
    if not _DAY.fullmatch(value):
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None  # the field's own validation says what is wrong
    if not FIRST_DAY <= day <= LAST_DAY:
        return f"a day between {FIRST_DAY} and {LAST_DAY}"
    return None


def month_in_range(year: int) -> bool:
    """Whether a calendar month of `year` (and the months next to it) can be shown."""
    return FIRST_DAY.year <= year <= LAST_DAY.year


def refuse(problems: list[tuple[tuple[str, ...], str]]) -> None:
    """Raise a 422 (the app's validation answer) naming each field, if there are problems."""
    if problems:
        raise RequestValidationError(
            [{"loc": loc, "msg": msg, "type": "value_error"} for loc, msg in problems]
        )


def check_pairs(where: str, pairs: Iterable[tuple[str, str]], prefix: str = "") -> None:
    """Refuse (422) any name or value a database cannot hold; `where` is query or form.

    `prefix` names a field that carries a query string itself (the forms' hidden ``q``).
    """
    problems: list[tuple[tuple[str, ...], str]] = []
    for name, value in pairs:
        field = prefix + (name if unstorable(name) is None else repr(name)[1:-1][:40])
        for text in (name, value):
            if (problem := unstorable(text)) is not None:
                problems.append(((where, field), problem))
                break
        else:
            if name in DAY_FIELDS and (problem := day_problem(value)) is not None:
                problems.append(((where, field), problem))
            elif (
                name == MONTH_FIELD
                and _MONTH.fullmatch(value)
                and not month_in_range(int(value[:4]))
            ):
                problems.append(((where, field), f"a month of {FIRST_DAY.year}–{LAST_DAY.year}"))
    refuse(problems)


def edge_query(request: Request) -> None:
    """Every route's first dependency: the query string holds only storable values."""
    check_pairs("query", request.query_params.multi_items())
