"""Cutting a long text into overlapping windows that each fit an embedder's window.

The helpers here work on a text's tokens as the tokenizer saw them (character offsets and the word
each token belongs to), so any embedder can use them: the model one with WordPiece tokens, the fake
one with whitespace words.  The result is always character spans into the original text: chunk
text is ``text[start:end]``, never decoded tokens, so what a search returns is what was stored.
"""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_OVERLAP = 32


def check_window(max_tokens: int, overlap: int) -> None:
    """Raise ValueError unless the windows can advance: 0 <= overlap < max_tokens."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    if not 0 <= overlap < max_tokens:
        raise ValueError(f"overlap must be in [0, max_tokens), got {overlap} for max_tokens {max_tokens}")


def _word_start(word_ids: Sequence[int | None], i: int) -> int:
    """The index of the first token of the word that token ``i`` belongs to."""
    while i > 0 and word_ids[i] is not None and word_ids[i] == word_ids[i - 1]:
        i -= 1
    return i


def token_windows(
    word_ids: Sequence[int | None], max_tokens: int, overlap: int = DEFAULT_OVERLAP
) -> list[tuple[int, int]]:
    """Half-open token ranges ``[start, end)`` of at most ``max_tokens`` tokens covering all tokens.

    Consecutive windows overlap by about ``overlap`` tokens (stride ``max_tokens - overlap``).  Both
    ends of a window are moved back to a word boundary where possible: a window that began or ended
    inside a word would re-tokenise differently on its own (a lone '##ing' piece becomes 'ing', maybe
    several pieces), and could then overflow the model window.
    """
    check_window(max_tokens, overlap)
    n = len(word_ids)
    if n <= max_tokens:
        return [(0, n)]
    windows: list[tuple[int, int]] = []
    start = 0
    while True:
        end = start + max_tokens
        if end >= n:
            windows.append((start, n))
            return windows
        cut = _word_start(word_ids, end)
        if cut > start:  # else one word is longer than the window: it has to be cut inside
            end = cut
        windows.append((start, end))
        nxt = _word_start(word_ids, end - overlap) if overlap else end
        # Always advance; without room for an overlap on a word boundary, windows just abut.
        start = nxt if nxt > start else end


def spans_from_offsets(
    offsets: Sequence[tuple[int, int]],
    word_ids: Sequence[int | None],
    text_len: int,
    max_tokens: int,
    overlap: int = DEFAULT_OVERLAP,
) -> list[tuple[int, int]]:
    """Character spans of the windows of ``token_windows`` for a text of ``text_len`` characters.

    ``offsets`` are the character offsets of the text's content tokens (no special tokens).  The
    first span starts at 0 and the last ends at ``text_len`` so that the spans cover the whole text,
    leading and trailing whitespace included.
    """
    windows = token_windows(word_ids, max_tokens, overlap)
    if len(windows) == 1:
        return [(0, text_len)]
    last = len(windows) - 1
    return [
        (0 if i == 0 else offsets[s][0], text_len if i == last else offsets[e - 1][1])
        for i, (s, e) in enumerate(windows)
    ]


def chunk_texts(text: str, spans: Sequence[tuple[int, int]]) -> list[str]:
    """The chunk strings of ``spans``: slices of the original text."""
    return [text[s:e] for s, e in spans]


def token_estimate(text: str) -> int:
    """Roughly how many tokens the model reads for ``text``, to budget a batch before tokenising:
    word pieces run about 4 characters, plus [CLS] and [SEP]; the model reads at most 256."""
    return min(256, 2 + len(text) // 4)
