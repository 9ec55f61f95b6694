"""tighten's parts on their own: edits diffed, fillers named, pauses shrunk, cuts on frames, crossfades resolved."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from operators.render.timeline import Timeline
from operators.speech.models import Word
from operators.tighten.audio import Sound, silent_runs
from operators.tighten.fillers import word_hits
from operators.tighten.frames import on_frames
from operators.tighten.models import FillerWords, Removed, SilenceSettings
from operators.tighten.removals import Layout, plan_removals, word_removal
from operators.tighten.request import deleted_words
from tests import tightengen as tg
from tests.mediagen import media_ctx
from tests.render_testing import probed_assets

RATE = 16000


def words(text: str, step: float = 0.3) -> list[Word]:
    return [Word(word=" " + w, start=round(i * step, 3), end=round(i * step + step * 0.9, 3), probability=0.9)
            for i, w in enumerate(text.split())]


def test_keep_text_deletions_slide_to_clause_boundaries_and_additions_are_named() -> None:
    said = words("So, the sun rose. The soft cushion fell. The salt breeze came.")
    # difflib may align the deleted run one word late ("soft ... fell. The"); it slides to the sentence.
    assert deleted_words(said, "so the SUN rose the salt breeze came") == ([4, 5, 6, 7], [])
    assert deleted_words(said, "So, the sun rose. The soft cushion fell. The salt breeze came!") == ([], [])
    assert deleted_words(said, "So the moon rose. The soft cushion fell.")[1] == ["moon"]


def test_filler_lists_name_hesitations_in_any_spelling_and_phrases_only_when_listed() -> None:
    said = words("Ummm so you know I like it, uh, HMM really")
    default = FillerWords(True)
    assert [(h.first, h.last, h.hesitation) for h in word_hits(said, default)] == [(0, 0, True), (7, 7, True),
                                                                                  (8, 8, True)]
    listed = FillerWords(["you know", "like"])
    assert [(h.text, h.hesitation) for h in word_hits(said, listed)] == [("you know", False), ("like", False)]
    assert not listed.hesitations and default.hesitations and FillerWords(False).phrases == ()


def test_silence_settings_take_the_preset_and_keep_less_than_they_cut() -> None:
    assert [SilenceSettings(preset=p).threshold for p in ("natural", "fast", "extra-fast")] == [0.6, 0.3, 0.15]
    assert SilenceSettings(preset="fast", min_seconds=1.0).threshold == 1.0
    with pytest.raises(ValidationError, match="keep_seconds"):
        SilenceSettings(preset="extra-fast", keep_seconds=0.2)


def tone(seconds: float, f0: float = 160.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.2 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


def quiet(seconds: float) -> np.ndarray:
    return np.random.default_rng(1).normal(0, 0.002, int(seconds * RATE)).astype(np.float32)


def test_pauses_shrink_to_their_room_tone_and_a_removed_word_is_cut_in_its_pauses() -> None:
    # 0.5 s lead, word 0 (0.5-1.0), 1.0 s pause, word 1 (2.0-2.4), 0.2 s pause, word 2 (2.6-3.0), 0.5 s tail
    samples = np.concatenate([quiet(0.5), tone(0.5), quiet(1.0), tone(0.4), quiet(0.2), tone(0.4), quiet(0.5)])
    sound = Sound.of(samples)
    layout = Layout.of(sound, 0.0, 3.5)
    assert [(round(a, 2), round(b, 2)) for a, b in silent_runs(sound)] == [(0.0, 0.5), (1.0, 2.0), (2.4, 2.6),
                                                                          (3.0, 3.5)]
    fast = SilenceSettings(preset="fast")
    cut = [(round(r.start, 2), round(r.end, 2), r.reason) for r in plan_removals(sound, layout, [], fast)]
    assert cut == [(0.0, 0.44, "silence"), (1.06, 1.94, "silence"), (3.06, 3.5, "silence")]
    said = [Word(word=w, start=s, end=e, probability=0.9) for w, s, e in
            (("one", 0.45, 1.1), ("two", 1.9, 2.45), ("three", 2.6, 3.0))]
    removal = word_removal(sound, layout, said, 1, 1, "edit")
    assert removal is not None and 1.0 < removal.start < 2.0 and 2.4 < removal.end < 2.6
    (joined,) = [r for r in plan_removals(sound, layout, [removal], fast) if r.reason == "edit"]
    # The pause before "two" and the one after it join (0.9 s): 0.12 s of room tone stays, split both sides.
    assert joined.reasons == ("edit", "silence")
    assert abs(joined.start - 1.06) <= 0.006 and abs(joined.end - 2.54) <= 0.006, joined


def test_cuts_land_on_frame_boundaries_and_ranges_closer_than_a_frame_merge() -> None:
    removed = [Removed(start=1.013, end=1.5, reason="silence"), Removed(start=1.51, end=2.0, reason="filler"),
               Removed(start=3.0, end=3.01, reason="edit")]
    cuts = on_frames((0.0, 4.0), removed, Fraction(25), None)
    assert [(c.frames, c.kept, c.reason) for c in cuts] == [((0, 25), True, None), ((25, 50), False, "filler"),
                                                           ((50, 100), True, None)]
    assert cuts[1].reasons == ("filler", "silence") and cuts[2].crossfade == 0.02 and cuts[0].crossfade is None


def test_audio_crossfade_runs_each_sound_on_past_the_cut_by_half(tmp_path: Path) -> None:
    tg.indexed_talk_video(tmp_path / "a.mp4", quiet(2.0))
    ctx = media_ctx(tmp_path)
    assets = probed_assets(ctx, asset_a="a.mp4")
    timeline = {"canvas": {"width": 160, "height": 96, "fps": 25}, "tracks": [{"type": "video", "clips": [
        {"asset": "asset_a", "in": 0, "out": "2/5"},
        {"asset": "asset_a", "in": 1, "out": "7/5", "audio_crossfade": 0.02},
        {"asset": "asset_a", "in": 0, "out": "1/5", "audio_crossfade": 0.02}]}]}
    first, second, third = Timeline.model_validate(timeline).with_assets(assets).spec.audio
    half = Fraction(1, 100)
    assert (first.duration, first.fade_out) == (Fraction(2, 5) + half, 2 * half)
    assert (second.start, second.src_in, second.fade_in) == (Fraction(2, 5) - half, 1 - half, 2 * half)
    # The source has no sound before 0: the third clip cannot start early, so neither runs on across that cut.
    assert (second.duration, second.fade_out) == (Fraction(2, 5) + half, 0)
    assert (third.start, third.src_in, third.fade_in) == (Fraction(4, 5), 0, 0)
