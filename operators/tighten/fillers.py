"""Fillers: words of the transcript on the filler list, and filler sounds the words do not cover.

Whisper leaves most hesitations out of its text (the graph prompts it with a verbatim example so it
writes more of them), and when it does write one its times are often off by a few hundred ms. So the
audio decides where a hesitation is: a voiced stretch of 0.15–1.2 s between two silences, inside the
speech, that is no other word's sound. A filler word of the transcript near such a stretch names it
(``found_in: words``); a stretch no word names is a filler found in the audio, cut when its confidence
(how much of it is voiced, how filler-like its length) is at least 0.5. Other listed words and phrases
("like", "you know") are real words: they are cut where the transcript puts them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from operators.speech.models import Word
from operators.tighten.audio import Sound, silent_runs, voicing
from operators.tighten.models import HESITATIONS, FillerFound, FillerWords

__all__ = ["MAX_SECONDS", "MIN_SECONDS", "WordHit", "find_fillers", "norm", "word_hits"]

MIN_SECONDS, MAX_SECONDS = 0.15, 1.2
#: How far (seconds) a hesitation word of the transcript may be from the sound it names.
NEAR = 0.6
_HESITATION_KEYS = {re.sub(r"(.)\1+", r"\1", h) for h in HESITATIONS}


def norm(text: str) -> str:
    """A word as the filler list and edited texts compare it: lower case, letters, digits and apostrophes."""
    return re.sub(r"[^a-z0-9']+", "", text.lower().replace("’", "'")).strip("'")


def _key(token: str) -> str:
    """Hesitations are spelt many ways: repeated letters count once ("Ummm" is "um", "hmm" is "hm")."""
    return re.sub(r"(.)\1+", r"\1", token)


@dataclass(frozen=True, slots=True)
class WordHit:
    first: int
    last: int
    text: str
    hesitation: bool


def word_hits(words: Sequence[Word], settings: FillerWords) -> list[WordHit]:
    """Runs of words that spell a listed filler (longest phrase first at each word)."""
    tokens = [_key(norm(w.word)) for w in words]
    phrases = sorted({tuple(_key(t) for t in p) for p in settings.phrases}, key=len, reverse=True)
    hits: list[WordHit] = []
    i = 0
    while i < len(tokens):
        match = next((p for p in phrases if tuple(tokens[i:i + len(p)]) == p), None)
        if match is None or not tokens[i]:
            i += 1
            continue
        last = i + len(match) - 1
        text = " ".join(w.word.strip() for w in words[i:last + 1])
        hits.append(WordHit(i, last, text, len(match) == 1 and match[0] in _HESITATION_KEYS))
        i = last + 1
    return hits


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def _sounds(sound: Sound, start: float, end: float) -> list[tuple[float, float]]:
    """The stretches of sound between the silences of ``[start, end)``."""
    edges = [start]
    for a, b in silent_runs(sound, start, end):
        edges += [a, b]
    edges.append(end)
    return [(a, b) for a, b in zip(edges[::2], edges[1::2]) if b > a]


def _claims(sounds: list[tuple[float, float]], words: Sequence[Word]) -> dict[int, list[int]]:
    """For each sound, the words that claim it: the one each word overlaps most, and any a word lies within."""
    claims: dict[int, list[int]] = {}
    for i, w in enumerate(words):
        span = (w.start, max(w.end, w.start + 0.02))
        overlaps = [_overlap(span, s) for s in sounds]
        owned = {k for k, o in enumerate(overlaps) if o >= 0.8 * (span[1] - span[0])}
        if overlaps and max(overlaps) > 0:
            owned.add(max(range(len(sounds)), key=overlaps.__getitem__))
        for k in owned:
            claims.setdefault(k, []).append(i)
    return claims


def _stretched(k: int, i: int, sounds: list[tuple[float, float]], words: Sequence[Word],
               claims: dict[int, list[int]]) -> bool:
    """Whisper stretched word ``i`` over sound ``k``: the word runs on into the pause (at least 0.15 s, which no
    word holds) towards the next sound, where the word it is joined to (no gap between them) is heard."""
    w = words[i]
    for step, beyond in ((1, w.end > sounds[k][1]), (-1, w.start < sounds[k][0])):
        j, other = i + step, k + step
        if not beyond or not 0 <= j < len(words) or not 0 <= other < len(sounds):
            continue
        joined = (words[j].start - w.end if step > 0 else w.start - words[j].end) < 0.02
        pause = sounds[other][0] - sounds[k][1] if step > 0 else sounds[k][0] - sounds[other][1]
        if joined and pause >= 0.15 and j in claims.get(other, []):
            return True
    return False


def _covered(sounds: list[tuple[float, float]], words: Sequence[Word]) -> set[int]:
    """Sounds that are some word's own; a sound claimed only by a word Whisper stretched over it is not."""
    claims = _claims(sounds, words)
    return {k for k, owners in claims.items()
            if not (len(owners) == 1 and _stretched(k, owners[0], sounds, words, claims))}


def _confidence(sound: Sound, span: tuple[float, float]) -> float:
    seconds = span[1] - span[0]
    fit = 1.0 if 0.2 <= seconds <= 0.8 else 0.75
    return round(voicing(sound, *span) * fit, 3)


def _candidates(sound: Sound, words: Sequence[Word], kept_words: Sequence[Word],
                ranges: Sequence[tuple[float, float]]) -> list[tuple[tuple[float, float], float]]:
    """Voiced sounds of filler length inside the speech that no (non-filler) word covers, with a confidence."""
    if not kept_words:
        return []
    first, last = kept_words[0].start, kept_words[-1].end
    found = []
    for lo, hi in ranges:
        sounds = _sounds(sound, lo, hi)
        covered = _covered(sounds, [w for w in kept_words if w.end > lo and w.start < hi])
        for k, span in enumerate(sounds):
            inside = first < span[0] and span[1] < last and span[0] > lo and span[1] < hi
            if k in covered or not inside or not MIN_SECONDS <= span[1] - span[0] <= MAX_SECONDS:
                continue
            found.append((span, _confidence(sound, span)))
    return found


def find_fillers(words: Sequence[Word], sound: Sound | None, settings: FillerWords,
                 ranges: Sequence[tuple[float, float]]) -> tuple[list[FillerFound], list[WordHit]]:
    """Every filler found (time order), and the listed words to cut where the transcript puts them."""
    hits = word_hits(words, settings)
    hesitant = {i for h in hits if h.hesitation for i in range(h.first, h.last + 1)}
    found: list[FillerFound] = []
    by_words: list[WordHit] = [h for h in hits if not h.hesitation]
    candidates = []
    if sound is not None and settings.hesitations:
        candidates = _candidates(sound, words, [w for i, w in enumerate(words) if i not in hesitant], ranges)
    taken: set[int] = set()
    for hit in (h for h in hits if h.hesitation):
        w = words[hit.first]
        near = [(max(0.0, c[0][0] - w.end, w.start - c[0][1]), k) for k, c in enumerate(candidates) if k not in taken]
        near = [n for n in near if n[0] <= NEAR]
        if near:
            k = min(near)[1]
            taken.add(k)
            (start, end), confidence = candidates[k]
            found.append(FillerFound(start=start, end=end, found_in="words", text=hit.text, word=hit.first,
                                     confidence=max(0.9, confidence)))
        else:
            by_words.append(hit)
            found.append(FillerFound(start=w.start, end=w.end, found_in="words", text=hit.text, word=hit.first,
                                     confidence=round(w.probability, 3)))
    for k, ((start, end), confidence) in enumerate(candidates):
        if k not in taken:
            found.append(FillerFound(start=start, end=end, found_in="audio", confidence=confidence,
                                     cut=confidence >= 0.5))
    for hit in (h for h in hits if not h.hesitation):
        words_of = words[hit.first:hit.last + 1]
        found.append(FillerFound(start=words_of[0].start, end=words_of[-1].end, found_in="words", text=hit.text,
                                 word=hit.first, confidence=round(min(w.probability for w in words_of), 3)))
    found.sort(key=lambda f: f.start)
    return found, sorted(by_words, key=lambda h: h.first)
