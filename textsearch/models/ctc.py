"""CTC for line models: targets from EMNIST Lines labels, and greedy decoding.

A line's label is ``<S> text <E>`` padded with ``<P>``, in the EMNIST mapping, whose first
four tokens are ``<B> <S> <E> <P>``.  The CTC target is the text alone: the tokens from
index 4 on.  The blank is ``<B>`` (index 0).
"""

from __future__ import annotations

import torch

BLANK = 0  # '<B>' in the EMNIST mapping
FIRST_CHARACTER = 4  # tokens below this are <B>, <S>, <E>, <P>


def ctc_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets, lengths) for ``torch.nn.CTCLoss`` from ``(B, L)`` line labels.

    Targets are padded ``(B, L - 1)``: row i holds its text in its first ``lengths[i]``
    places (the label after ``<S>``; what follows the text is ignored by the loss).
    """
    lengths = (labels >= FIRST_CHARACTER).sum(dim=1)
    return labels[:, 1:], lengths


def label_tokens(labels: torch.Tensor) -> list[list[int]]:
    """Each label's text, as token indices."""
    return [[t for t in row if t >= FIRST_CHARACTER] for row in labels.tolist()]


def greedy_decode(scores: torch.Tensor) -> list[list[int]]:
    """Best path of ``(B, C, T)`` scores: the likeliest token per step, repeats collapsed,
    then blanks (and the label's other special tokens) dropped."""
    best = scores.argmax(dim=1).tolist()
    out = []
    for path in best:
        tokens, previous = [], None
        for t in path:
            if t != previous and t >= FIRST_CHARACTER:
                tokens.append(t)
            previous = t
        out.append(tokens)
    return out


def to_text(tokens: list[int], mapping: list[str]) -> str:
    return "".join(mapping[t] for t in tokens)


def min_steps(tokens: list[int]) -> int:
    """Output steps CTC needs to emit ``tokens``: one per token, plus a blank between each
    pair of equal neighbours."""
    return len(tokens) + sum(1 for a, b in zip(tokens, tokens[1:]) if a == b)
