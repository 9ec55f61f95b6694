"""Chapter titles: each chapter's most distinctive phrase, by TF-IDF over the talk's chapters.

Candidates are runs of 1 to 3 words none of which is a stopword ("black holes", "interest
rate"). A phrase scores its count in the chapter times its smoothed inverse chapter frequency,
``1 + ln((1 + N) / (1 + df))``, so a phrase every chapter uses scores least. Ties go to the
two-word phrase, then three words, then one (a pair names a thing best: "black hole"), then
to the one said first. Titles are kept distinct: a chapter
whose best phrase is already another's title takes its next best.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

__all__ = ["STOPWORDS", "phrases", "titles"]

STOPWORDS = frozenset("""
a about above after again against all almost also although always am among an and another any anyone anything are
around as at away back be became because become been before being below between both but by came can cannot could
did do does doing done down during each either else enough even ever every few first for from further get gets
getting give go goes going gone got had has have having he her here hers herself him himself his how however i if
in into is it its itself just keep kind know last least less let like likely lot lots made make makes many may maybe
me might mine more most much must my myself never new next no nor not nothing now of off often oh ok okay on once
one only or other others our ours ourselves out over own part put quite rather really right said same say says see
seem seems several shall she should show since so some something sometimes soon still such take than that the their
theirs them themselves then there these they thing things think this those though through thus to today together
too took toward towards two under until up upon us use used uses using very via want was way we well were what
whatever when where whether which while who whom whose why will with within without would yes yet you your yours
yourself yourselves let's it's that's there's here's what's i'm you're we're they're i've you've we've they've
don't doesn't didn't can't won't isn't aren't wasn't weren't i'll you'll we'll they'll i'd you'd we'd they'd
""".split())

_LENGTH_ORDER = {1: 0, 2: 1, 0: 2}  # by spaces in the phrase: two words, three, one
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("’", "'"))


def phrases(text: str, longest: int = 3) -> Counter[str]:
    """Every run of 1..``longest`` words of ``text`` without a stopword (or a lone digit), counted."""
    words = _words(text)
    counts: Counter[str] = Counter()
    for i in range(len(words)):
        for n in range(1, longest + 1):
            run = words[i : i + n]
            if len(run) < n or any(w in STOPWORDS or len(w) < 2 for w in run):
                break
            counts[" ".join(run)] += 1
    return counts


def _first_use(text: str) -> dict[str, int]:
    words, first = _words(text), {}
    for i in range(len(words)):
        for n in (1, 2, 3):
            first.setdefault(" ".join(words[i : i + n]), i)
    return first


def titles(chapters: Sequence[str], *, longest: int = 3) -> list[str]:
    """One title per chapter text: its best phrase, capitalised; "Chapter k" where it has none."""
    counted = [phrases(text, longest) for text in chapters]
    df = Counter(p for c in counted for p in c)
    total = len(chapters)
    taken: set[str] = set()
    out = []
    for k, (text, counts) in enumerate(zip(chapters, counted, strict=True)):
        first = _first_use(text)

        def rank(p: str, counts: Counter[str] = counts, first: dict[str, int] = first) -> tuple[float, int, int]:
            return (-counts[p] * (1 + math.log((1 + total) / (1 + df[p]))), _LENGTH_ORDER[p.count(" ")],
                    first.get(p, 0))

        best = next((p for p in sorted(counts, key=rank) if p not in taken), None)
        if best is None:
            out.append(f"Chapter {k + 1}")
            continue
        taken.add(best)
        out.append(best[:1].upper() + best[1:])
    return out
