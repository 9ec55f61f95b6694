"""render.captions: transcript words mapped through an edit's cuts, then grouped into caption states."""

from __future__ import annotations

import json
import pickle
from fractions import Fraction

import pytest

from operators.render.captions import CaptionState, Cut, TimedWord, caption_states, map_words
from operators.speech.models import Transcript, Word

YELLOW = (255, 212, 0, 255)
SPEECH = (
    "So today we are going to look at how captions work in this editor. "
    "Every word has a start and an end time from the transcript, and the renderer shows "
    "them where the edit plays them? It does! After a long pause a new cue begins here"
)


def _word(text: str, start: float, end: float) -> Word:
    return Word(word=text, start=start, end=end, probability=0.9)


def _timed(text: str, start: float = 0.0, step: float = 0.3, pauses: dict[int, float] | None = None) -> list[TimedWord]:
    """Words ``step`` apart, each spoken for 80% of its slot; ``pauses`` adds silence before word i."""
    out, t = [], start
    for i, w in enumerate(text.split()):
        t += (pauses or {}).get(i, 0.0)
        out.append(TimedWord(w, round(t, 3), round(t + step * 0.8, 3)))
        t += step
    return out


def _cut(src_start, src_end, out_start) -> Cut:
    return Cut(Fraction(src_start), Fraction(src_end), Fraction(out_start))


def _texts(states: list[CaptionState]) -> list[list[list[str]]]:
    return [[[r.text for r in line] for line in s.lines] for s in states]


def _assert_ordered(states: list[CaptionState]) -> None:
    assert states, "some captions"
    for s in states:
        assert s.end > s.start
    for a, b in zip(states, states[1:]):
        assert a.end <= b.start, (a, b)


def test_map_words_drops_cut_words_and_shifts_kept_ones():
    words = [_word(w, i, i + 0.8) for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six"])]
    # The edit keeps source [0, 2) at 0 and [5, 7) at 2: "two", "three" and "four" are cut out.
    mapped = map_words(words, [_cut(5, 7, 2), _cut(0, 2, 0)])
    assert [w.text for w in mapped] == ["zero", "one", "five", "six"]
    assert [(w.start, w.end) for w in mapped] == [(0.0, 0.8), (1.0, 1.8), (2.0, 2.8), (3.0, 3.8)]


def test_map_words_uses_the_midpoint_and_clamps_to_the_cut():
    # "edge" is mostly before 2.0: it shows in the first cut, clipped at the cut's end, and not in the second.
    words = [_word("edge", 1.5, 2.3), _word("late", 2.9, 3.5)]
    mapped = map_words(words, [_cut(0, 2, 0), _cut(2, 3, 10)])
    assert mapped == [TimedWord("edge", 1.5, 2.0)]


def test_map_words_shows_a_source_range_used_twice_twice():
    words = [_word("again", 1.0, 1.5), _word("outside", 4.0, 4.5)]
    mapped = map_words(words, [_cut(0, 2, 0), _cut(0, 2, 10)])
    assert mapped == [TimedWord("again", 1.0, 1.5), TimedWord("again", 11.0, 11.5)]


def test_map_words_reads_a_transcript_strips_text_and_drops_empty_words():
    data = {
        "language": "en",
        "duration": 10.0,
        "segments": [{"start": 0.0, "end": 3.0, "text": " Hi there",
                      "words": [{"word": " Hi", "start": 0.0, "end": 0.4, "probability": 0.9},
                                {"word": "  ", "start": 0.5, "end": 0.6, "probability": 0.9},
                                {"word": " there", "start": 0.7, "end": 1.2, "probability": 0.9}]}],
    }
    transcript = Transcript.model_validate_json(json.dumps(data))
    mapped = map_words(transcript.words, [_cut("1/2", 3, "33/10")])  # starts mid-way through the silence
    assert mapped == [TimedWord("there", 3.5, 4.0)]
    assert map_words(transcript.words, []) == []


def test_lines_cues_fit_their_limits_and_never_overlap():
    words = _timed(SPEECH)
    states = caption_states(words, style="lines", max_chars=32, max_lines=2)
    _assert_ordered(states)
    texts = _texts(states)
    assert [w for s in texts for line in s for w in line] == [w.text for w in words], "every word once, in order"
    for lines in texts:
        assert 1 <= len(lines) <= 2
        assert all(len(" ".join(line)) <= 32 for line in lines)
    assert all(r.color is None for s in states for line in s.lines for r in line)
    # Words are 0.06 s apart at most: every cue runs on to the next one, so nothing flickers.
    for a, b in zip(states, states[1:]):
        assert a.end == b.start


def test_lines_break_at_pauses_and_sentence_ends():
    words = _timed("one two three four. five six seven eight nine", pauses={7: 2.0})
    states = caption_states(words, style="lines", max_chars=42)
    assert [" ".join(w for line in s for w in line) for s in _texts(states)] == [
        "one two three four.", "five six seven", "eight nine"]
    # The gap before "eight" is 2 s: the cue before it ends on its last word's end, not later.
    assert states[1].end == words[6].end
    assert states[2].start == words[7].start
    # Sentence punctuation does not end a cue of fewer than three words.
    short = caption_states(_timed("Yes. I agree with that"), style="lines")
    assert len(short) == 1


def test_word_highlight_tiles_each_cue_and_highlights_the_spoken_word():
    words = _timed(SPEECH, pauses={20: 1.5})
    cues = caption_states(words, style="lines", max_chars=32)
    states = caption_states(words, style="word-highlight", max_chars=32, highlight=YELLOW)
    _assert_ordered(states)
    assert len(states) == len(words)
    for state, word in zip(states, words):
        runs = [r for line in state.lines for r in line]
        lit = [r for r in runs if r.color is not None]
        assert len(lit) == 1 and lit[0].color == YELLOW
        assert lit[0].text == word.text
        # The word lit is the one being spoken (or the last one spoken) at the middle of the state.
        t = (state.start + state.end) / 2
        spoken = [w for w in words if w.start <= t]
        assert spoken[-1].text == word.text
    # States tile each cue: the same cue's pictures follow each other without a gap.
    for cue in cues:
        inside = [s for s in states if cue.start <= s.start < cue.end]
        assert inside[0].start == cue.start and inside[-1].end == cue.end
        assert all(a.end == b.start for a, b in zip(inside, inside[1:]))
        assert all(_texts([s])[0] == _texts([cue])[0] for s in inside), "the whole cue shows each time"


def test_word_pop_groups_words_on_one_line():
    words = _timed("a b c d e f g h", pauses={5: 2.0})
    states = caption_states(words, style="word-pop", words_per_pop=3)
    _assert_ordered(states)
    assert _texts(states) == [[["a", "b", "c"]], [["d", "e"]], [["f", "g", "h"]]]
    assert states[0].end == states[1].start, "a short gap is bridged"
    assert states[1].end == words[4].end, "a long pause is not"
    singles = caption_states(words, style="word-pop", words_per_pop=1)
    assert [s.lines[0][0].text for s in singles] == [w.text for w in words]
    _assert_ordered(singles)


def test_word_pop_bridges_only_short_gaps():
    words = [TimedWord("one", 0.0, 0.5), TimedWord("two", 0.6, 1.0), TimedWord("three", 1.5, 2.0)]
    states = caption_states(words, style="word-pop", words_per_pop=1)
    assert [(s.start, s.end) for s in states] == [(0.0, 0.6), (0.6, 1.0), (1.5, 2.0)]


def test_overlapping_and_degenerate_words_still_give_clean_states():
    # Whisper sometimes ends a word after the next one starts, or gives it no length at all.
    words = [TimedWord("one", 0.0, 0.9), TimedWord("two", 0.5, 0.5), TimedWord("three", 0.5, 1.2),
             TimedWord("four", 5.0, 5.0)]
    for style in ("lines", "word-highlight", "word-pop"):
        states = caption_states(words, style=style, highlight=YELLOW, words_per_pop=1)
        _assert_ordered(states)


def test_long_words_are_split_to_fit_a_line():
    words = [TimedWord("see", 0.0, 0.3), TimedWord("https://example.com/a/very/long/path/indeed", 0.4, 1.6)]
    for style in ("lines", "word-highlight", "word-pop"):
        states = caption_states(words, style=style, max_chars=12, highlight=YELLOW)
        _assert_ordered(states)
        assert all(len(" ".join(line)) <= 12 for s in _texts(states) for line in s)


def test_bad_arguments_raise():
    words = _timed("hello there")
    with pytest.raises(ValueError, match="style"):
        caption_states(words, style="nope")
    with pytest.raises(ValueError, match="words_per_pop"):
        caption_states(words, style="word-pop", words_per_pop=4)
    with pytest.raises(ValueError, match="highlight"):
        caption_states(words, style="word-highlight")
    assert caption_states([], style="lines") == []


def test_values_pickle():
    state = caption_states(_timed("pickle me please"), style="word-highlight", highlight=YELLOW)[1]
    assert pickle.loads(pickle.dumps(state)) == state
    cut = _cut("1001/30000", 2, 0)
    assert pickle.loads(pickle.dumps(cut)) == cut
