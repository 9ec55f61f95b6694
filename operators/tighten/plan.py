"""``tighten.plan``: from the transcript and the sound to the kept and removed ranges, on frame boundaries.

No encode and no render: a dry run (``render: false`` with a transcript given) is this step and the
probe. See :mod:`.removals` for where the cuts go, :mod:`.fillers` for the fillers, :mod:`.frames` for
frame boundaries and crossfades.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from operators.clips.models import TranscriptUsed
from operators.context import OpContext
from operators.registry import operator
from operators.speech.models import Word
from operators.speech.pcm import iter_pcm, media_path
from operators.tighten.audio import Sound
from operators.tighten.fillers import WordHit, find_fillers
from operators.tighten.frames import on_frames
from operators.tighten.models import Cut, FillerFound, FillerWords, Plan, RemovedWords, SilenceSettings, TightenSource
from operators.tighten.removals import Layout, Removal, plan_removals, sound_removal, word_removal
from operators.types import SourceRef, StoredFile

__all__ = ["make_plan", "read_samples", "tighten_plan"]


def _runs(indices: Sequence[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for i in sorted(set(indices)):
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def _inside(w: Word, lo: float, hi: float) -> bool:
    return lo <= (w.start + w.end) / 2 < hi


def _range_removals(sound: Sound, layout: Layout, words: list[Word], edits: list[tuple[int, int]],
                    fillers: list[FillerFound], hits: list[WordHit]) -> list[Removal]:
    out: list[Removal | None] = []
    runs = [(run, "edit") for run in edits] + [((h.first, h.last), "filler") for h in hits]
    for (first, last), reason in runs:
        inside = [i for i in range(first, last + 1) if _inside(words[i], layout.lo, layout.hi)]
        if inside:
            out.append(word_removal(sound, layout, words, inside[0], inside[-1], reason))  # type: ignore[arg-type]
    for f in fillers:
        if f.cut and layout.lo <= f.start < layout.hi:
            out.append(sound_removal(sound, layout, (f.start, f.end), "filler"))
    return [r for r in out if r is not None]


def make_plan(source: TightenSource, samples: np.ndarray, words: list[Word], *, fillers: FillerWords | None,
              silences: SilenceSettings | None, removed: Sequence[int]) -> Plan:
    """The plan for ``source`` (its ranges), its sound (16 kHz mono) and its transcript's words."""
    sound = Sound.of(samples)
    fps = Fraction(source.fps)
    found, hits = find_fillers(words, sound, fillers, source.ranges) if fillers is not None else ([], [])
    edits = _runs(removed)
    cuts: list[Cut] = []
    for k, (lo, hi) in enumerate(source.ranges):
        layout = Layout.of(sound, lo, hi)
        removals = _range_removals(sound, layout, words, edits, found, hits)
        cuts += on_frames((lo, hi), plan_removals(sound, layout, removals, silences), fps, sound, clip=k)
    frames = lambda cs: sum(c.frames[1] - c.frames[0] for c in cs)  # noqa: E731
    kept = [c for c in cuts if c.kept]
    return Plan(cuts=tuple(cuts), fillers=tuple(found), fps=source.fps,
                duration_before=round(float(frames(cuts) / fps), 3), duration_after=round(float(frames(kept) / fps), 3),
                words_before=sum(any(_inside(w, lo, hi) for lo, hi in source.ranges) for w in words),
                words_after=sum(any(_inside(w, c.start, c.end) for c in kept) for w in words))


def read_samples(ctx: OpContext, audio: SourceRef | StoredFile) -> np.ndarray:
    """The whole 16 kHz mono WAV, as float32 (a ten-minute talk is 38 MB)."""
    with ctx.storage.reading(media_path(audio)) as local:
        blocks = list(iter_pcm(local, block_seconds=60.0))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


@operator("tighten.plan", weight=3)
def tighten_plan(source: TightenSource, audio: SourceRef | StoredFile, transcript: TranscriptUsed,
                 fillers: FillerWords | None = None, silences: SilenceSettings | None = None,
                 remove_words: RemovedWords | None = None, keep_text: RemovedWords | None = None, *,
                 ctx: OpContext) -> Plan:
    """Cut silences, fillers and the words edited out: the kept and removed ranges, with reasons."""
    began = time.perf_counter()
    source = TightenSource.model_validate(source)
    words = TranscriptUsed.model_validate(transcript).transcript.words  # remove_words indexes them in this order
    removed = [i for edit in (remove_words, keep_text) if edit is not None
               for i in RemovedWords.model_validate(edit).indices]
    plan = make_plan(source, read_samples(ctx, audio), words,
                     fillers=FillerWords.model_validate(fillers) if fillers is not None else None,
                     silences=SilenceSettings.model_validate(silences) if silences is not None else None,
                     removed=removed)
    cut = [c for c in plan.cuts if not c.kept]
    counts = {r: sum(c.reason == r for c in cut) for r in ("silence", "filler", "edit")}
    sources = {s: sum(f.found_in == s for f in plan.fillers) for s in ("words", "audio")}
    ctx.log(f"Cut {len(cut)} range(s) ({counts['silence']} silence, {counts['filler']} filler, {counts['edit']} edit): "
            f"{plan.duration_before:.2f} s -> {plan.duration_after:.2f} s ({plan.seconds_saved:.2f} s saved), "
            f"{plan.words_before} -> {plan.words_after} words; fillers found: {sources['words']} in the words, "
            f"{sources['audio']} in the audio; planned in {time.perf_counter() - began:.2f} s")
    ctx.progress(1.0)
    return plan
