"""Note/photo disagreement: the rule that reads an operator's note, measured on a labelled set
of English and Japanese notes, and the verdict it leaves under each site setting."""

from __future__ import annotations

import pytest

from inspector.quality import Decision, decide
from inspector.quality.notes import disagrees, note_polarity, weigh_note
from tests.fixtures.notes import CATALOGUE, ENGLISH, JAPANESE, SpokenNote

# The rule is judged on the reference transcripts (what a perfect recogniser would write);
# the set was written beside the rule, so this guards it rather than predicting a new line.
MIN_ACCURACY = 0.95


def _accuracy(notes: tuple[SpokenNote, ...]) -> float:
    right = sum(note_polarity(n.text, CATALOGUE) == n.polarity for n in notes)
    return right / len(notes)


@pytest.mark.parametrize(("name", "notes"), [("English", ENGLISH), ("Japanese", JAPANESE)])
def test_the_rule_reads_most_labelled_notes_right(name: str, notes: tuple[SpokenNote, ...]) -> None:
    assert len(notes) >= 20
    assert sum(n.polarity == "defect" for n in notes) == len(notes) // 2
    accuracy = _accuracy(notes)
    print(f"{name}: {accuracy:.1%} of {len(notes)} reference notes read right")
    wrong = [n.text for n in notes if note_polarity(n.text, CATALOGUE) != n.polarity]
    assert accuracy >= MIN_ACCURACY, wrong


@pytest.mark.parametrize(
    ("text", "polarity"),
    [
        ("no scratch", "fine"),
        ("not damaged", "fine"),
        ("scratch-free", "fine"),
        ("not fine", "defect"),
        ("not good", "defect"),
        ("傷なし", "fine"),
        ("傷はありません", "fine"),
        ("異常ありません", "fine"),
        ("異常あり", "defect"),
        ("無傷です", "fine"),
        ("不良品です", "defect"),  # 良品 inside 不良品 is no fine word
        ("不合格", "defect"),
        ("不良品ではありません", "fine"),
        ("ＮＧ", "defect"),  # full-width, as some keyboards type it
        ("missing hole by the flange", "defect"),  # a catalogue name, as spoken
        ("looks good, small burr on the edge", None),  # both: a person reads it
        ("part number 12", None),
        ("", None),
    ],
)
def test_negations_and_mixed_notes_read_as_the_operator_meant(
    text: str, polarity: str | None
) -> None:
    assert note_polarity(text, CATALOGUE) == polarity


def test_a_site_defect_name_counts_only_when_the_site_catalogues_it() -> None:
    assert note_polarity("porosity near the boss") is None
    assert note_polarity("porosity near the boss", ["porosity"]) == "defect"


def test_a_defect_note_disagrees_with_pass_and_a_fine_note_with_fail_never_with_review() -> None:
    assert disagrees("defect", Decision.PASS) and disagrees("fine", Decision.FAIL)
    assert not disagrees("defect", Decision.FAIL) and not disagrees("fine", Decision.PASS)
    assert not disagrees("defect", Decision.REVIEW) and not disagrees("fine", Decision.REVIEW)
    assert not disagrees(None, Decision.PASS)


def test_review_setting_makes_a_disagreeing_pass_review_and_keeps_its_leaning() -> None:
    scored = decide(0.9, 0.7)
    words = ("deep scratch on the flange",)
    flagged = weigh_note(scored, words, CATALOGUE, "flag")
    assert flagged.disagrees and flagged.decided == scored
    reviewed = weigh_note(scored, words, CATALOGUE, "review")
    assert reviewed.disagrees and reviewed.decided.decision is Decision.REVIEW
    assert (reviewed.decided.leaning, reviewed.decided.p_pass) == (Decision.PASS, 0.9)
    assert weigh_note(scored, words, CATALOGUE, "off") == weigh_note(scored, (), (), "flag")


def test_a_transcript_that_says_fine_flags_a_fail_when_the_typed_note_says_nothing() -> None:
    check = weigh_note(decide(0.1, 0.7), (None, "問題ありません"), CATALOGUE, "review")
    assert check.disagrees and check.decided.decision is Decision.REVIEW
