"""The verdict tokens of a checkpoint and P(PASS) from the logits at the verdict position."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from inspector.engine.prompt import VERDICT_WORDS
from inspector.errors import ModelLoadError
from inspector.protocol import Decision


@dataclass(frozen=True)
class VerdictTokens:
    """Token ids of the two verdict words, as this checkpoint's tokenizer spells them."""

    pass_ids: tuple[int, ...]
    fail_ids: tuple[int, ...]

    @property
    def pass_id(self) -> int:
        """The token whose probability is P(PASS)."""
        return self.pass_ids[0]

    @property
    def fail_id(self) -> int:
        """The token whose probability is P(FAIL)."""
        return self.fail_ids[0]

    def spelled(self, decision: Decision) -> tuple[int, ...]:
        """The tokens that write out `decision` (PASS or FAIL) after the primer."""
        return self.pass_ids if decision is Decision.PASS else self.fail_ids


def verdict_tokens(tokenizer: PreTrainedTokenizerBase) -> VerdictTokens:
    """Look the verdict words up in the tokenizer; their first tokens must differ."""
    pass_ids = tuple(tokenizer.encode(VERDICT_WORDS[Decision.PASS], add_special_tokens=False))
    fail_ids = tuple(tokenizer.encode(VERDICT_WORDS[Decision.FAIL], add_special_tokens=False))
    if not pass_ids or not fail_ids or pass_ids[0] == fail_ids[0]:
        raise ModelLoadError(
            "the tokenizer cannot tell PASS from FAIL by their first token "
            f"(PASS → {list(pass_ids)}, FAIL → {list(fail_ids)})"
        )
    return VerdictTokens(pass_ids, fail_ids)


def pass_probability(logits: torch.Tensor, tokens: VerdictTokens) -> list[float]:
    """P(PASS) normalised over PASS and FAIL, per row of next-token `logits` [B, V]."""
    pair = logits[:, [tokens.pass_id, tokens.fail_id]].float()
    return [float(p) for p in torch.softmax(pair, dim=-1)[:, 0].tolist()]
