"""'Did you mean' suggestions by edit distance."""

from __future__ import annotations

from collections.abc import Iterable


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions) between two strings."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate nearest to `word`, if it is near enough to be a likely typo."""
    best: tuple[int, str] | None = None
    lowered = word.lower()
    limit = max(2, len(word) // 3)
    for candidate in candidates:
        if abs(len(candidate) - len(word)) > limit:
            continue  # the distance is at least the difference in length: too far
        distance = edit_distance(lowered, candidate.lower())
        if best is None or distance < best[0]:
            best = (distance, candidate)
    if best is None:
        return None
    return best[1] if best[0] <= limit else None
