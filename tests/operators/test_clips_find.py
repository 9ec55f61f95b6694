"""The clip finder on a multi-topic espeak talk: prompts, topics, clean cuts, determinism, edge cases.

Real parts throughout: espeak-ng speech, the real all-MiniLM-L6-v2 embeddings on onnxruntime,
the loudness operator on the talk's WAV. The transcript is the talk's exact one (what was said
and when), so these tests check the finder, not the recogniser; the API tests run the whole
graph with transcription.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from operators.clips.text.embeddings import embed, get_embedder
from operators.clips.find import FindParams, clean_prompt, find_clips
from operators.clips.loudness import LoudnessParams, loudness
from operators.clips.models import Loudness
from operators.clips.text.sentences import split_sentences, words_of
from operators.clips.text.topics import segment_topics
from operators.speech.models import Transcript, TranscriptSegment, Word
from operators.types import SourceRef
from tests import clipgen as cg
from tests import speechgen as sg
from tests.mediagen import media_ctx

pytestmark = pytest.mark.skipif(not sg.have_espeak(), reason=sg.ESPEAK_MISSING)

PROMPTS = {
    "pricing": "the part about pricing",
    "bread": "baking bread",
    "planets": "planets and the night sky",
    "garden": "gardening tips",
}


@pytest.fixture(scope="module")
def talk() -> cg.Talk:
    return cg.topic_talk()


@pytest.fixture(scope="module")
def loud(talk: cg.Talk, tmp_path_factory: pytest.TempPathFactory) -> Loudness:
    root = tmp_path_factory.mktemp("loudness")
    sg.write_wav(root / "talk.wav", talk.composed.audio)
    return loudness(SourceRef(path="talk.wav"), params=LoudnessParams(), ctx=media_ctx(root))


def find(talk: cg.Talk, loud: Loudness | None, transcript: Transcript | None = None, log=None, **params):
    settings = {"min_seconds": 15, "max_seconds": 30, "max_clips": 4, **params}
    return find_clips(transcript or cg.exact_transcript(talk.composed), loud, FindParams(**settings),
                      log or (lambda m: None))


def topic_of(talk: cg.Talk, start: float, end: float) -> str:
    return max(talk.spans, key=lambda name: cg.iou((start, end), talk.spans[name]))


@pytest.mark.parametrize("topic", list(PROMPTS))
def test_a_prompt_puts_the_top_clip_inside_its_topic(talk: cg.Talk, loud: Loudness, topic: str) -> None:
    clips = find(talk, loud, prompt=PROMPTS[topic])
    top = clips[0]
    overlap = cg.iou((top.start, top.end), talk.spans[topic])
    assert overlap >= 0.6, (topic, top, talk.spans)
    assert top.components["relevance"] > max(c.components["relevance"] for c in clips[1:])
    assert any("prompt" in r for r in top.reasons), top.reasons


def test_without_a_prompt_the_clips_cover_different_topics(talk: cg.Talk, loud: Loudness) -> None:
    clips = find(talk, loud)
    assert len(clips) == 4
    assert "relevance" not in clips[0].components
    covered = {topic_of(talk, c.start, c.end) for c in clips}
    assert len(covered) >= 3, [(c.start, c.end) for c in clips]
    # No two overlap by more than 20 % of the shorter one.
    for i, a in enumerate(clips):
        for b in clips[i + 1 :]:
            shared = max(0.0, min(a.end, b.end) - max(a.start, b.start))
            assert shared <= 0.2 * min(a.duration, b.duration) + 1e-6, (a, b)


def test_topic_segmentation_finds_the_four_subjects(talk: cg.Talk) -> None:
    sentences = split_sentences(words_of(cg.exact_transcript(talk.composed)), talk.composed.duration)
    assert [s.text for s in sentences] == [u.text for u in talk.utterances]
    topics = segment_topics(embed([s.text for s in sentences]))
    assert topics.starts == (0, 5, 10, 15)


def _misaligned(talk: cg.Talk, shift: float) -> Transcript:
    """The exact transcript with its times off by ``shift`` s (and up to 0.05 s more), as a recogniser's can be."""
    rng = np.random.default_rng(7)
    exact = cg.exact_transcript(talk.composed)
    segments = []
    for seg in exact.segments:
        offset = shift + float(rng.uniform(-0.05, 0.05))
        words = tuple(Word(word=w.word, start=round(max(0.0, w.start + offset), 3), end=round(w.end + offset, 3),
                           probability=w.probability) for w in seg.words)
        segments.append(TranscriptSegment(start=words[0].start, end=words[-1].end, text=seg.text, words=words))
    return Transcript(language="en", duration=exact.duration, segments=tuple(segments))


@pytest.mark.parametrize("shift", [-0.3, 0.0, 0.3])
def test_every_clip_is_cut_at_sentence_boundaries_in_silence(talk: cg.Talk, loud: Loudness, shift: float) -> None:
    # Words timed 0.3 s late or early would put a cut made from their times alone into speech:
    # the cut goes to the silence the loudness envelope shows instead.
    audio = talk.composed.audio
    starts = [u.start for u in talk.utterances]
    ends = [u.end for u in talk.utterances]
    for prompt, bounds in (("", (15, 30)), ("bread", (10, 20)), ("", (5, 12))):
        clips = find(talk, loud, _misaligned(talk, shift), prompt=prompt, min_seconds=bounds[0],
                     max_seconds=bounds[1], max_clips=6)
        assert clips
        for clip in clips:
            assert bounds[0] <= clip.end - clip.start <= bounds[1], clip
            # It starts just before a sentence starts and ends just after one ends...
            first = min(range(len(starts)), key=lambda i: abs(starts[i] - clip.start))
            last = min(range(len(ends)), key=lambda i: abs(ends[i] - clip.end))
            assert starts[first] - 1.0 <= clip.start <= starts[first], (clip.start, starts[first])
            assert ends[last] <= clip.end <= ends[last] + 1.0, (clip.end, ends[last])
            # ...in silence: nothing audible within 40 ms of either cut, so no word is clipped.
            for t in (clip.start, clip.end):
                around = audio[max(0, int((t - 0.04) * sg.RATE)) : int((t + 0.04) * sg.RATE)]
                assert np.abs(around).max(initial=0.0) < 1e-3, f"cut at {t:.3f} s is not in silence"
            assert clip.text.startswith(talk.utterances[first].text)
            assert clip.text.endswith(talk.utterances[last].text)


def test_scores_components_and_reasons_explain_the_ranking(talk: cg.Talk, loud: Loudness) -> None:
    for prompt in ("", "the part about pricing"):
        clips = find(talk, loud, prompt=prompt, max_clips=6)
        assert [c.rank for c in clips] == list(range(1, len(clips) + 1))
        assert [c.score for c in clips] == sorted((c.score for c in clips), reverse=True)
        for clip in clips:
            assert 0 <= clip.score <= 100
            expected = {"hook", "completeness", "coherence", "density", "energy"} | ({"relevance"} if prompt else set())
            assert set(clip.components) == expected
            assert all(0.0 <= v <= 1.0 for v in clip.components.values()), clip.components
            assert clip.reasons and all(isinstance(r, str) and r for r in clip.reasons)
            assert clip.title and len(clip.title.split()) <= 14
    # "How much should you charge…?" opens the best pricing clip: the hook says so.
    best = find(talk, loud, prompt="pricing")[0]
    assert best.components["hook"] >= 0.65 and "opens with a question" in best.reasons


def test_the_same_input_gives_the_same_clips(talk: cg.Talk, loud: Loudness) -> None:
    first = find(talk, loud, prompt="gardening", max_clips=6)
    get_embedder.cache_clear()  # a new session, as another worker process would have
    second = find(talk, loud, prompt="gardening", max_clips=6)
    assert [c.model_dump() for c in first] == [c.model_dump() for c in second]


def test_no_speech_gives_no_clips_and_says_so(talk: cg.Talk, loud: Loudness) -> None:
    lines: list[str] = []
    silent = Transcript(language="en", duration=120.0, segments=())
    assert find(talk, None, silent, log=lines.append) == []
    assert lines == ["No speech in the transcript: no clips"]


def test_a_source_shorter_than_min_seconds_gives_no_clips(tmp_path: Path) -> None:
    short = sg.compose_sentences(list(sg.SENTENCES[:2]), [0.6])
    talk = cg.Talk(short, {})
    lines: list[str] = []
    assert find(talk, None, log=lines.append, min_seconds=15) == []
    assert len(lines) == 1 and "less than min_seconds (15 s)" in lines[0], lines


def test_min_seconds_above_max_seconds_is_refused() -> None:
    with pytest.raises(ValueError, match=r"min_seconds \(40\) must not be above max_seconds \(30\)"):
        FindParams(min_seconds=40, max_seconds=30)


def test_prompts_lose_their_filler() -> None:
    assert clean_prompt("the part about pricing") == "pricing"
    assert clean_prompt("Find the moments where they discuss hiring.") == "they discuss hiring"
    assert clean_prompt("funny moments") == "funny moments"
    assert clean_prompt("the part about") == "the part about"


def test_sentences_end_at_punctuation_and_pauses_and_long_ones_are_split() -> None:
    def words(spec: list[tuple[str, float]]) -> list[tuple[str, float, float]]:
        return [(w, t, t + 0.3) for w, t in spec]

    text = words([("Hello", 0.0), ("there.", 0.4), ("Dr.", 0.8), ("Smith", 1.2), ("agrees", 1.6),
                  ("so", 4.0), ("we", 4.4), ("go", 4.8)])
    sentences = split_sentences(text, 6.0)
    assert [s.text for s in sentences] == ["Hello there.", "Dr. Smith agrees", "so we go"]
    assert [s.terminal for s in sentences] == [True, False, False]
    assert sentences[1].gap_after == pytest.approx(4.0 - 1.9)
    run_on = words([(f"w{i}", i * 0.4 + (1.0 if i == 30 else 0.0)) for i in range(60)])
    parts = split_sentences(run_on, 30.0, max_seconds=20)
    assert [p.words for p in parts] == [30, 30]  # cut at its longest pause


def test_embeddings_are_unit_vectors_whatever_the_batch() -> None:
    texts = ["Pricing is hard.", "A much longer sentence about how to bake a loaf of sourdough bread at home.", "Hi"]
    together = embed(texts)
    alone = np.vstack([embed([t]) for t in texts])
    assert together.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(together, alone, atol=2e-5)  # padding never leaks into the mean
    similar = embed(["How much should I charge for my product?", "What price should we set?", "The cat sleeps."])
    assert similar[0] @ similar[1] > similar[0] @ similar[2] + 0.2


def test_a_talk_in_another_language_says_the_score_rests_on_the_other_components(talk: cg.Talk,
                                                                                 loud: Loudness) -> None:
    # The sentence model reads English only: a prompt's similarity on Spanish sentences would be noise.
    spanish = cg.exact_transcript(talk.composed).model_copy(update={"language": "es"})
    lines: list[str] = []
    clips = find(talk, loud, transcript=spanish, log=lines.append, prompt=PROMPTS[next(iter(PROMPTS))])
    assert clips and all("relevance" not in c.components for c in clips)
    assert all(any("in 'es'" in r and "relevance is left out" in r for r in c.reasons) for c in clips)
    assert any("reads English only" in line for line in lines)
    english = find(talk, loud, prompt=PROMPTS[next(iter(PROMPTS))])
    assert all("relevance" in c.components and not any("English only" in r for r in c.reasons) for c in english)
