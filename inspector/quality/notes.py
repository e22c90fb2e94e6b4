"""Note/photo disagreement: what the operator's words say about a part, and whether a verdict
contradicts them.

The operator's note (typed, or the voice note's transcript) is read by a rule, not by a
second model pass: it costs no GPU time and its mistakes can be read and fixed here. A note
is a *defect* report when it names a defect (the site's catalogue, generic defect words, or a
negated "fine" word: "not good", "大丈夫じゃない"), *fine* when it says the part is good or
denies a defect ("no scratches", "傷なし", "異常ありません"), and None when it says neither or
both ("looks fine, small burr": a person reads those). A defect note on a PASS, or a fine
note on a FAIL, disagrees; a REVIEW goes to a person anyway and never disagrees.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from inspector.quality.decision import Decided, Decision

Polarity = Literal["defect", "fine"]
# A site's setting: ignore notes, flag a disagreeing verdict, or also send it to REVIEW.
NoteDisagreement = Literal["off", "flag", "review"]

DEFECT_WORDS_EN = (
    "defect",
    "defective",
    "damage",
    "crack",
    "scratch",
    "dent",
    "burr",
    "chip",
    "bad",
    "reject",
    "fail",
    "ng",
    "problem",
    "issue",
    "broken",
    "bent",
)
FINE_WORDS_EN = ("fine", "ok", "okay", "good", "clean", "pass", "perfect", "acceptable")
DEFECT_WORDS_JA = (
    "傷",
    "キズ",
    "きず",
    "凹み",
    "へこみ",
    "バリ",
    "割れ",
    "欠け",
    "不良",
    "不合格",
    "異常",  # 異常あり: a defect; 異常なし / 異常ありません: negated, so fine
    "問題",  # 問題あり / 問題なし, the same way
    "ダメ",
    "だめ",
)
FINE_WORDS_JA = ("良品", "大丈夫", "きれい", "綺麗", "正常", "合格")

# Words that deny the English term they come shortly before ("no visible scratches",
# "not damaged", "doesn't look good"), within the same clause.
_NEGATORS_EN = frozenset(
    {"no", "not", "without", "never", "none", "nothing", "zero", "free", "isn't", "aren't"}
    | {"doesn't", "don't", "didn't", "wasn't", "weren't", "hasn't", "haven't", "cannot"}
)
_NEGATION_WINDOW_WORDS = 3
# "scratch-free", "scratch free": a denial after the term.
_FREE_AFTER = re.compile(r"^[\s-]*free\b")
# Japanese denies after the term: 傷なし, 傷はありません, 割れていません, 不良ではない.
_NEGATION_AFTER_JA = re.compile(
    r"^(?:品)?[はがものも\s]*(?:一つ|ひとつ|全く|まったく|特に)?[はがも]?\s*"
    r"(?:なし|無し|ない|無い|なく|ありません|ございません|見当たりません|見当たらない|見られません"
    r"|(?:では|じゃ)(?:ない|なく|ありません)|て(?:い)?(?:ない|ません))"
)
# 「バリも凹みもない」: a list joined by も, denied once at its end.
_LIST_DENIED_JA = re.compile(r"^も[^、。]{0,20}?も(?:ない|無い|なし|ありません)")
_CLAUSE_SPLIT = re.compile(
    r"[,.;:!?、。，．！？\n]+|\s(?:but|however|and|though|although)\s|けど|けれど"
)
_WORD = re.compile(r"[a-z']+")


@dataclass(frozen=True, slots=True)
class NoteCheck:
    """A verdict after the operator's words were weighed, and whether they disagree with it."""

    decided: Decided
    disagrees: bool


def _english_pattern(term: str) -> re.Pattern[str]:
    # Whole words by ASCII letters only, so "NGです" and "okです" still match; catalogue
    # names such as "missing-hole" also match as spoken ("missing hole"); simple inflections
    # ("scratches", "dented", "chipped") count.
    body = r"[\s-]+".join(re.escape(part) for part in re.split(r"[\s_-]+", term) if part)
    return re.compile(rf"(?<![a-z]){body}(?:s|es|ed|d|ped|ing)?(?![a-z])")


def _negated_before(clause: str, start: int) -> bool:
    words = _WORD.findall(clause[:start].replace("’", "'"))[-_NEGATION_WINDOW_WORDS:]
    return any(w in _NEGATORS_EN or w.endswith("n't") for w in words)


def _mentions(clause: str, terms: Iterable[str]) -> list[bool]:
    """For each mention of an English or Japanese term in `clause`: whether it is denied."""
    found: list[bool] = []
    for term in terms:
        if term.isascii():
            for match in _english_pattern(term).finditer(clause):
                found.append(
                    _negated_before(clause, match.start())
                    or bool(_FREE_AFTER.match(clause[match.end() :]))
                )
        else:
            for match in re.finditer(re.escape(term), clause):
                if clause[: match.start()].endswith("不"):
                    continue  # 不良品, 不合格, 不正常: the word inside says the opposite
                found.append(
                    bool(_NEGATION_AFTER_JA.match(clause[match.end() :]))
                    or bool(_LIST_DENIED_JA.match(clause[match.end() :]))
                    or clause[: match.start()].endswith("無")  # 無傷
                )
    return found


def note_polarity(text: str | None, catalogue: Iterable[str] = ()) -> Polarity | None:
    """ "defect", "fine" or None (neither, or both) for an operator's note in English or Japanese.

    `catalogue` adds the site's defect names (SiteProfile.defects) to the generic words.
    """
    if not text:
        return None
    normal = unicodedata.normalize("NFKC", text).lower()
    defect_terms = (*DEFECT_WORDS_EN, *DEFECT_WORDS_JA, *(name.lower() for name in catalogue))
    fine_terms = (*FINE_WORDS_EN, *FINE_WORDS_JA)
    defect = fine = False
    denied_defect = False
    for clause in _CLAUSE_SPLIT.split(normal):
        for denied in _mentions(clause, defect_terms):
            if denied:
                denied_defect = True
            else:
                defect = True
        for denied in _mentions(clause, fine_terms):
            if denied:  # "not good", "大丈夫じゃない"
                defect = True
            else:
                fine = True
    # A denied defect is weaker evidence than a named one: "no scratches, but a dent" reports
    # the dent; a named defect beside a "fine" word is ambiguous ("the burr is fine").
    if defect and fine:
        return None
    if defect:
        return "defect"
    if fine or denied_defect:
        return "fine"
    return None


def disagrees(polarity: Polarity | None, decision: Decision) -> bool:
    """A defect note on a PASS, or a fine note on a FAIL; a REVIEW never disagrees."""
    return (polarity == "defect" and decision is Decision.PASS) or (
        polarity == "fine" and decision is Decision.FAIL
    )


def weigh_note(
    scored: Decided,
    words: Iterable[str | None],
    catalogue: Iterable[str],
    setting: NoteDisagreement,
) -> NoteCheck:
    """The verdict after the operator's words (typed note, transcript) under the site setting.

    Under "review" a disagreeing PASS or FAIL becomes REVIEW; its leaning and P(PASS) stay,
    so the reviewer still sees what the photo said.
    """
    if setting == "off":
        return NoteCheck(scored, False)
    names = tuple(catalogue)
    flag = any(disagrees(note_polarity(w, names), scored.decision) for w in words if w)
    if flag and setting == "review":
        return NoteCheck(replace(scored, decision=Decision.REVIEW), True)
    return NoteCheck(scored, flag)
