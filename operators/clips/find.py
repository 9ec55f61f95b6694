"""``clips.find``: from a transcript (and the audio's loudness) to the best clips, ranked and explained.

Sentences (:mod:`.sentences`) → embeddings (:mod:`.embeddings`) → topics (:mod:`.topics`) →
candidates cut in silence (:mod:`.candidates`) → scores (:mod:`.scoring`) → non-maximum
suppression (:mod:`.select`). The same transcript, audio and params always give the same
clips, scores and order: nothing here is random, and every tie is broken by time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from operators.clips.candidates import cut_points, enumerate_candidates
from operators.clips.text.embeddings import embed
from operators.clips.models import FoundClip, Loudness, Sentence, TranscriptUsed
from operators.clips.scoring import Scorer
from operators.clips.select import select
from operators.clips.text.sentences import split_sentences, words_of
from operators.clips.text.topics import segment_topics
from operators.context import OpContext
from operators.registry import operator
from operators.speech.models import Transcript

__all__ = ["FindParams", "clean_prompt", "find", "find_clips", "title_of"]


class FindParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field("", max_length=500, description="what to look for, e.g. 'the part about pricing'")
    # max_seconds comes first so that min_seconds can be checked against it.
    max_seconds: float = Field(60.0, ge=1, le=600, description="longest clip, seconds")
    min_seconds: float = Field(15.0, ge=1, le=600, description="shortest clip, seconds")
    max_clips: int = Field(10, ge=1, le=50)

    @field_validator("min_seconds")
    @classmethod
    def _not_above_max(cls, value: float, info: ValidationInfo) -> float:
        longest = info.data.get("max_seconds")
        if longest is not None and value > longest:
            raise ValueError(f"min_seconds ({value:g}) must not be above max_seconds ({longest:g})")
        return value


_FILLER = re.compile(
    r"^\s*(?:(?:find|show|give|get|make)(?:\s+me)?\s+)?(?:(?:the|a|an|some|all|any)\s+)?"
    r"(?:part|parts|bit|bits|moment|moments|section|sections|segment|segments|clip|clips|piece|pieces|where|when)"
    r"\s+(?:about|on|of|where|when|in which|that|covering|discussing|talking about)?\s*",
    re.IGNORECASE)


def clean_prompt(prompt: str) -> str:
    """The subject of a prompt: "the part about pricing" → "pricing" ("funny moments" stays)."""
    stripped = _FILLER.sub("", prompt.strip(), count=1).strip(" .?!")
    return stripped or prompt.strip()


def title_of(sentences: Sequence[Sentence], emb: np.ndarray) -> str:
    """A short title: an opening question, else the span's most central short sentence."""
    first = sentences[0].text.strip()
    if first.endswith("?") and len(first.split()) <= 14:
        return first
    centrality = emb @ emb.sum(axis=0)
    short = [i for i, s in enumerate(sentences) if 3 <= len(s.text.split()) <= 12]
    pick = max(short or range(len(sentences)), key=lambda i: (centrality[i], -i))
    words = sentences[pick].text.strip().rstrip(".").split()
    if len(words) > 12:
        # Shorten at a comma if one falls early enough, else after 8 words that end on a content word.
        commas = [i for i, w in enumerate(words[:10]) if w.endswith(",") and i >= 3]
        cut = commas[-1] + 1 if commas else 8
        while cut > 3 and words[cut - 1].lower().strip(",;:") in _STOPWORDS:
            cut -= 1
        words = words[:cut]
        words[-1] = words[-1].rstrip(",;:") + "…"
    text = " ".join(words)
    return text[:1].upper() + text[1:]


_STOPWORDS = {"a", "an", "the", "of", "to", "in", "on", "at", "for", "and", "or", "but", "so", "its", "it's", "his",
              "her", "their", "our", "your", "my", "with", "by", "from", "as", "is", "are", "was", "were", "be",
              "that", "this", "you", "we", "they", "can", "will", "would", "should", "could", "if", "than", "then"}


def find_clips(transcript: Transcript, loudness: Loudness | None, params: FindParams,
               log=lambda message: None) -> list[FoundClip]:
    """The clips, best first (``log`` gets a line when there are none, and a summary)."""
    began = time.perf_counter()
    words = words_of(transcript)
    duration = max(transcript.duration, loudness.duration if loudness is not None else 0.0)
    if not words:
        log("No speech in the transcript: no clips")
        return []
    if duration < params.min_seconds:
        log(f"The source lasts {duration:.1f} s, less than min_seconds ({params.min_seconds:g} s): no clips")
        return []
    sentences = split_sentences(words, duration, max_seconds=min(20.0, 0.75 * params.max_seconds))
    prompt = clean_prompt(params.prompt) if params.prompt.strip() else ""
    note = _language_note(transcript.language, bool(prompt))
    if note:
        prompt = ""  # the sentence model reads English only: a prompt's similarity would be noise
        log(f"Clips: {note}")
    vectors = embed([s.text for s in sentences] + ([prompt] if prompt else []))
    emb, prompt_vec = (vectors[:-1], vectors[-1]) if prompt else (vectors, None)
    topics = segment_topics(emb)
    cuts = cut_points(sentences, duration, loudness)
    cand = enumerate_candidates(cuts, params.min_seconds, params.max_seconds)
    if cand.count == 0:
        log(f"No span of whole sentences lasts between {params.min_seconds:g} and {params.max_seconds:g} s "
            f"({len(sentences)} sentences): no clips")
        return []
    scorer = Scorer(sentences, emb, topics.of, loudness, prompt_vec)
    scored = scorer.score(cand)
    chosen = select(cand, scored.score, max_clips=params.max_clips, topics=None if prompt else topics.of)
    clips = []
    for rank, i in enumerate(chosen, 1):
        first, last = int(cand.first[i]), int(cand.last[i])
        span = sentences[first : last + 1]
        clips.append(FoundClip(
            rank=rank, start=float(cand.start[i]), end=float(cand.end[i]), first_sentence=first,
            last_sentence=last, topic=int(topics.of[first]), score=float(scored.score[i]),
            components={k: float(v[i]) for k, v in scored.components.items()},
            reasons=tuple(scorer.reasons(scored, i, first, last)) + ((note,) if note else ()),
            title=title_of(span, emb[first : last + 1]), text=" ".join(s.text for s in span),
        ))
    log(f"Found {len(clips)} clip(s) among {cand.count} candidates: {len(sentences)} sentences, "
        f"{topics.count} topic(s){f', prompt {prompt!r}' if prompt else ''} ({time.perf_counter() - began:.2f} s)")
    return clips


def _language_note(language: str | None, prompted: bool) -> str | None:
    """What a clip's reasons say when the talk is not English: the embeddings (all-MiniLM-L6-v2) are English-only,
    so a prompt's relevance is left out and the score rests on the other components."""
    if not language or language == "en":
        return None
    left_out = "the prompt's relevance is left out and " if prompted else ""
    return (f"the talk is in '{language}' and the sentence model reads English only: {left_out}the score rests on "
            "hook, completeness, coherence, pace and energy")


@operator("clips.find", weight=5, version=2)
def find(transcript: TranscriptUsed, loudness: Loudness | None = None, *, params: FindParams,
         ctx: OpContext) -> list[FoundClip]:
    """Find, score and choose the clips of a transcript."""
    transcript = TranscriptUsed.model_validate(transcript)
    clips = find_clips(transcript.transcript, loudness, params, ctx.log)
    ctx.progress(1.0)
    return clips
