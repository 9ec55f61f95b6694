"""A talk's keywords: its most distinctive words by TF-IDF over its segments, stopwords left out.

Each transcript segment is a document. A word's weight in a segment is its count there times its inverse
document frequency (``log((1 + N) / (1 + df)) + 1``, scikit-learn's smoothing), so a word said often in a
few segments outweighs one said everywhere; its score is its best weight in any segment. The keywords are
the best scoring tenth of the talk's distinct words (at least one). :func:`accent_keywords` then colours at
most one keyword per caption line: the best scoring one on it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from operators.render.text import RGBA, Run

__all__ = ["STOPWORDS", "accent_keywords", "given_keywords", "keyword_scores", "normal"]

STOPWORDS = frozenset("""
a about above after again against all am an and any are aren't as at be because been before being below between
both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each few for from
further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself him himself his
how how's i i'd i'll i'm i've if in into is isn't it it's its itself just let's like me more most mustn't my myself
no nor not now of off on once only or other ought our ours ourselves out over own really right same shan't she
she'd she'll she's should shouldn't so some such than that that's the their theirs them themselves then there
there's these they they'd they'll they're they've this those through to too under until up us very was wasn't we
we'd we'll we're we've were weren't what what's when when's where where's which while who who's whom why why's
will with won't would wouldn't yeah yes you you'd you'll you're you've your yours yourself yourselves okay oh um
uh so going get got gonna want one two also well thing things lot kind know think mean say said make go see
""".split())
_WORD = re.compile(r"[\w'’-]+", re.UNICODE)
#: Share of the talk's distinct words that are keywords.
_SHARE = 0.1


def normal(text: str) -> str:
    """A word as keywords compare it: lower case, without the punctuation round it."""
    found = _WORD.findall(text.replace("’", "'").lower())
    return found[0].strip("'-") if found else ""


def keyword_scores(segments: Sequence[Iterable[str]]) -> dict[str, float]:
    """The keywords of a talk given as its segments' words, each with its TF-IDF score."""
    docs = [Counter(w for w in (normal(t) for t in words) if _content(w)) for words in segments]
    docs = [d for d in docs if d]
    if not docs:
        return {}
    df = Counter(w for d in docs for w in d)
    idf = {w: math.log((1 + len(docs)) / (1 + n)) + 1 for w, n in df.items()}
    best: dict[str, float] = {}
    for doc in docs:
        for word, count in doc.items():
            best[word] = max(best.get(word, 0.0), count * idf[word])
    keep = max(1, math.ceil(len(best) * _SHARE))
    ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))[:keep]
    return dict(ranked)


def given_keywords(words: Sequence[str]) -> dict[str, float]:
    """A timeline's own keyword list, scored so that an earlier one wins a line."""
    return {w: float(len(words) - i) for i, w in enumerate(normal(x) for x in words) if w}


def _content(word: str) -> bool:
    return len(word) > 2 and word not in STOPWORDS and not word.isdigit()


def accent_keywords(lines: tuple[tuple[Run, ...], ...], scores: Mapping[str, float],
                    accent: RGBA) -> tuple[tuple[Run, ...], ...]:
    """``lines`` with the best keyword of each line (if any) drawn in ``accent``; runs already coloured stay."""
    out = []
    for line in lines:
        ranked = [(scores[normal(r.text)], i) for i, r in enumerate(line) if normal(r.text) in scores]
        if ranked:
            _, best = max(ranked, key=lambda item: (item[0], -item[1]))
            if line[best].color is None:
                line = (*line[:best], replace(line[best], color=accent), *line[best + 1:])
        out.append(line)
    return tuple(out)
