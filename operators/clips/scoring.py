"""Scoring candidate clips: a 0-100 score made of named components in [0, 1], and reasons in words.

- ``relevance`` (with a prompt): cosine similarity of the prompt to the span's mean sentence embedding.
- ``hook``: the first sentence is a question, holds a number or makes a strong claim (65 %), and
  the speech in the first 3 s is loud for this talk (35 %).
- ``completeness``: the last sentence ends on . ? ! (40 %) and is followed by a pause (30 %);
  the first does not start on a connective such as "and", "so", "but" (30 %).
- ``coherence``: mean pairwise similarity of the span's sentences; a span across a topic
  boundary (TextTiling) keeps 60 % of it.
- ``density``: words per second in a natural range (2.0-3.6), less the share of dead air.
- ``energy``: loudness variation of the speech (60 %) and its level for this talk (40 %).

Everything is computed for all candidates at once from prefix sums, so an hour's ~10,000
candidates cost milliseconds; only the chosen clips get their reasons written out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from operators.clips.candidates import Candidates, silence_threshold
from operators.clips.models import Loudness, Sentence

__all__ = ["WEIGHTS", "WEIGHTS_WITH_PROMPT", "Scored", "Scorer"]

WEIGHTS = {"hook": 0.28, "completeness": 0.22, "coherence": 0.22, "density": 0.14, "energy": 0.14}
WEIGHTS_WITH_PROMPT = {"relevance": 0.45, "hook": 0.15, "completeness": 0.12, "coherence": 0.12,
                       "density": 0.08, "energy": 0.08}

CONNECTIVES = {"and", "so", "but", "or", "because", "then", "also", "which", "plus", "anyway", "though",
               "although", "however", "therefore", "thus", "nor", "yet", "besides", "meanwhile", "otherwise",
               "whereas", "hence", "like", "um", "uh"}
_DANGLING = {"it", "this", "that", "these", "those", "they", "he", "she", "them", "there"}
_NUMBER_WORDS = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
                 "twenty", "thirty", "forty", "fifty", "hundred", "thousand", "million", "billion", "percent",
                 "half", "double", "triple", "first", "second", "third"}
_CLAIM = re.compile(
    r"\b(never|always|everyone|everybody|nobody|nothing|best|worst|biggest|most|least|secret|truth|mistake|"
    r"wrong|myth|must|need to|have to|should|stop|the key|the reason|here's|this is why|the problem|"
    r"the only|changed|surprising|shocking|important|crucial|impossible|guarantee|actually|really)\b",
    re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9']+")


def _first_word(text: str) -> str:
    match = _WORD.search(text.lower())
    return match.group(0) if match else ""


def _hook_kind(text: str) -> tuple[float, str | None]:
    stripped = text.strip()
    words = set(_WORD.findall(stripped.lower()))
    if stripped.endswith("?"):
        return 1.0, "opens with a question"
    if re.search(r"\d", stripped) or words & _NUMBER_WORDS:
        return 0.75, "opens with a number"
    if _CLAIM.search(stripped):
        return 0.75, "opens with a strong claim"
    if words & {"you", "your", "you're", "imagine"}:
        return 0.5, "speaks to the viewer from the start"
    return 0.2, None


@dataclass(frozen=True, slots=True)
class Scored:
    score: np.ndarray
    components: dict[str, np.ndarray]
    #: Per-candidate figures behind the components, for the reasons.
    relevance_cos: np.ndarray | None
    words_per_second: np.ndarray
    crosses_topic: np.ndarray
    loudness_spread: np.ndarray | None


class Scorer:
    """Per-sentence features and prefix sums for one talk; :meth:`score` scores any candidates."""

    def __init__(self, sentences: Sequence[Sentence], embeddings: np.ndarray, topics: np.ndarray,
                 loudness: Loudness | None, prompt: np.ndarray | None = None) -> None:
        self.sentences = list(sentences)
        n = len(self.sentences)
        self.emb = embeddings.astype(np.float64)
        self.topics = topics
        self.prompt = prompt
        self.cum_emb = np.vstack([np.zeros((1, self.emb.shape[1])), np.cumsum(self.emb, axis=0)])
        self.cum_words = np.concatenate([[0], np.cumsum([s.words for s in self.sentences])])
        inner_gap = np.array([max(0.0, s.gap_after - 0.7) for s in self.sentences])
        self.cum_dead = np.concatenate([[0.0], np.cumsum(inner_gap)])
        hooks = [_hook_kind(s.text) for s in self.sentences]
        self.hook_text = np.array([h[0] for h in hooks]) if n else np.zeros(0)
        self.hook_reason = [h[1] for h in hooks]
        self.first_words = [_first_word(s.text) for s in self.sentences]
        self.start_ok = np.array([0.0 if w in CONNECTIVES else 0.5 if w in _DANGLING else 1.0
                                  for w in self.first_words])
        self.terminal = np.array([1.0 if s.terminal else 0.0 for s in self.sentences])
        self.pause_after = np.array([min(1.0, s.gap_after / 0.6) for s in self.sentences])
        self.sentence_relevance = self.emb @ prompt if prompt is not None else None
        self.cum_rel = (np.concatenate([[0.0], np.cumsum(self.sentence_relevance)])
                        if self.sentence_relevance is not None else None)
        self._audio(loudness)

    # -- the audio's prefix sums ------------------------------------------------------------
    def _audio(self, loudness: Loudness | None) -> None:
        self.hop = loudness.hop if loudness is not None else 0.05
        db = np.asarray(loudness.db if loudness is not None else (), np.float64)
        self.has_audio = db.size > 0 and float(db.max()) > -90.0
        if not self.has_audio:
            return
        speech = db >= silence_threshold(loudness)
        self.speech_level = float(np.median(db[speech])) if speech.any() else float(db.max())
        self.cum_power = np.concatenate([[0.0], np.cumsum(10.0 ** (db / 10.0))])
        self.cum_n = np.concatenate([[0], np.cumsum(speech)])
        self.cum_db = np.concatenate([[0.0], np.cumsum(np.where(speech, db, 0.0))])
        self.cum_db2 = np.concatenate([[0.0], np.cumsum(np.where(speech, db * db, 0.0))])

    def _frames(self, t: np.ndarray) -> np.ndarray:
        return np.clip(np.round(t / self.hop).astype(np.int64), 0, self.cum_n.size - 1)

    def _level_db(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Loudness (dB of the mean power) over frames [a, b)."""
        b = np.maximum(b, a + 1).clip(max=self.cum_power.size - 1)
        a = np.minimum(a, b - 1)
        power = (self.cum_power[b] - self.cum_power[a]) / np.maximum(b - a, 1)
        return 10.0 * np.log10(np.maximum(power, 1e-20))

    # -- the components ---------------------------------------------------------------------
    def score(self, cand: Candidates) -> Scored:
        f, l = cand.first, cand.last
        count = l - f + 1
        duration = np.maximum(cand.duration, 1e-6)
        components: dict[str, np.ndarray] = {}
        norms = self._norms(f, l)

        relevance_cos = None
        if self.prompt is not None and self.cum_rel is not None:
            relevance_cos = (self.cum_rel[l + 1] - self.cum_rel[f]) / np.maximum(norms, 1e-12)
            components["relevance"] = np.clip(relevance_cos, 0.0, 1.0)

        spread = None
        if self.has_audio:
            a = self._frames(cand.start)
            opening = self._level_db(a, self._frames(cand.start + 3.0))
            audio_hook = np.clip((opening - (self.speech_level - 12.0)) / 12.0, 0.0, 1.0)
            b = self._frames(cand.end)
            n = np.maximum(self.cum_n[b] - self.cum_n[a], 1)
            mean = (self.cum_db[b] - self.cum_db[a]) / n
            spread = np.sqrt(np.maximum((self.cum_db2[b] - self.cum_db2[a]) / n - mean * mean, 0.0))
            level = self._level_db(a, b)
            energy = (0.6 * np.clip((spread - 3.0) / 6.0, 0.0, 1.0)
                      + 0.4 * np.clip((level - (self.speech_level - 10.0)) / 10.0, 0.0, 1.0))
        else:
            audio_hook = np.full(f.size, 0.5)
            energy = np.full(f.size, 0.5)
        components["hook"] = 0.65 * self.hook_text[f] + 0.35 * audio_hook
        components["completeness"] = 0.4 * self.terminal[l] + 0.3 * self.pause_after[l] + 0.3 * self.start_ok[f]

        norms_sq = norms**2
        pairwise = np.where(count > 1, (norms_sq - count) / np.maximum(count * (count - 1), 1), 1.0)
        crosses = self.topics[f] != self.topics[l]
        components["coherence"] = np.clip((pairwise - 0.05) / 0.35, 0.0, 1.0) * np.where(crosses, 0.6, 1.0)

        wps = (self.cum_words[l + 1] - self.cum_words[f]) / duration
        pace = np.interp(wps, [1.0, 2.0, 3.6, 5.0], [0.0, 1.0, 1.0, 0.0])
        dead = (self.cum_dead[l] - self.cum_dead[f]) / duration  # gaps between the span's sentences
        components["density"] = np.clip(pace * (1.0 - np.minimum(1.0, 2.5 * dead)), 0.0, 1.0)
        components["energy"] = energy

        weights = WEIGHTS_WITH_PROMPT if self.prompt is not None else WEIGHTS
        total = sum(weights[name] * components[name] for name in weights)
        components = {k: np.round(v, 3) for k, v in components.items()}
        return Scored(score=np.round(100.0 * total, 1), components=components, relevance_cos=relevance_cos,
                      words_per_second=wps, crosses_topic=crosses, loudness_spread=spread)

    def _norms(self, f: np.ndarray, l: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """|sum of the span's embeddings|, in chunks (an hour has ~10^4 candidates x 384 dims)."""
        out = np.zeros(f.size)
        for i in range(0, f.size, chunk):
            span = self.cum_emb[l[i : i + chunk] + 1] - self.cum_emb[f[i : i + chunk]]
            out[i : i + chunk] = np.sqrt(np.einsum("ij,ij->i", span, span))
        return out

    # -- reasons ----------------------------------------------------------------------------
    def reasons(self, scored: Scored, i: int, first: int, last: int) -> list[str]:
        """A few words on why candidate ``i`` (sentences ``first..last``) scored as it did."""
        c = {k: float(v[i]) for k, v in scored.components.items()}
        good: list[tuple[float, str]] = []
        bad: list[tuple[float, str]] = []
        if scored.relevance_cos is not None:
            cos = float(scored.relevance_cos[i])
            if cos >= 0.3:
                good.append((2.0 + cos, f"on the prompt's subject (similarity {cos:.2f})"))
            elif cos < 0.15:
                bad.append((1.0, f"far from the prompt (similarity {cos:.2f})"))
        hook = self.hook_reason[first]
        if hook:
            good.append((c["hook"] + 0.2, hook))
        if self.has_audio and c["hook"] - 0.65 * self.hook_text[first] >= 0.25:
            good.append((0.5, "starts strong: loud speech in the first 3 s"))
        first_word = self.first_words[first]
        if first_word in CONNECTIVES:
            bad.append((0.9, f"starts on '{first_word}', mid-thought"))
        if self.terminal[last] and self.pause_after[last] >= 1.0:
            good.append((0.6, "ends on a full sentence and a pause"))
        elif not self.terminal[last]:
            bad.append((0.6, "ends without a full stop"))
        if bool(scored.crosses_topic[i]):
            bad.append((0.8, "runs across two topics"))
        elif c["coherence"] >= 0.6:
            good.append((c["coherence"], "stays on one topic"))
        wps = float(scored.words_per_second[i])
        if c["density"] >= 0.7:
            good.append((0.4 * c["density"], f"natural pace ({wps:.1f} words/s) with little dead air"))
        elif c["density"] < 0.4:
            bad.append((0.5, f"slow or gappy ({wps:.1f} words/s)"))
        if scored.loudness_spread is not None:
            spread = float(scored.loudness_spread[i])
            if c["energy"] >= 0.6:
                good.append((0.5 * c["energy"], f"lively delivery (loudness varies {spread:.0f} dB)"))
            elif c["energy"] < 0.25:
                bad.append((0.3, "flat delivery"))
        good.sort(key=lambda r: -r[0])
        bad.sort(key=lambda r: -r[0])
        return [text for _, text in good[:3]] + [text for _, text in bad[:2]]
