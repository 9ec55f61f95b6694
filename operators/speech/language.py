"""``speech.detect_language``: which language a recording speaks, heard across it, not only at its start.

Whisper's own detection reads the first 30 s. A talk that opens with music, a greeting in another
language, or a bilingual interview is then transcribed in the wrong language throughout. Here up to
:data:`PROBES` windows of speech (the VAD's), spread evenly over the recording, are each classified
by the model's language head, and their probabilities are averaged, weighted by the speech each
window holds. When windows disagree (each sure of its own language, the second language holding at
least :data:`MIXED_SHARE` of the weight) the recording is reported as ``mixed``, and transcription
detects the language of each window on its own (:func:`operators.speech.batched.decode_each_language`).

With a ``language`` given (not ``auto``), nothing is run: the report says it was given.
"""

from __future__ import annotations

from collections import defaultdict


from operators.context import OpContext
from operators.registry import operator
from operators.speech.batched import language_probabilities
from operators.speech.models import LanguageReport, LanguageWindow, SpeechMap
from operators.speech.pcm import decode_range, media_path
from operators.speech.whisper import WhisperParams, load_model, resolve_model, threads_for
from operators.types import SourceRef, StoredFile

__all__ = ["MIXED_SHARE", "PROBES", "detect_language", "probe_spans"]

PROBES = 5
#: Seconds each probe hears: enough for the language head (10 s is reliable), short enough that a probe
#: rarely straddles a change of language.
PROBE_SECONDS = 12.0
#: The second language's share of the weighted probability at which a recording counts as mixed.
MIXED_SHARE = 0.25
#: A window counts towards "mixed" only when it is at least this sure of its language.
SURE = 0.5


def probe_spans(speech: SpeechMap, probes: int = PROBES, seconds: float = PROBE_SECONDS) -> list[tuple[float, float]]:
    """Up to ``probes`` spans of at most ``seconds``, each starting at the speech nearest to an evenly spread
    point of the recording; no span twice."""
    if not speech.segments:
        return [(0.0, min(speech.duration, seconds))] if speech.duration > 0 else []
    spans: list[tuple[float, float]] = []
    for k in range(probes):
        point = (k + 0.5) / probes * speech.duration
        seg = min(speech.segments, key=lambda s: max(s[0] - point, point - s[1], 0.0))  # the speech nearest
        begin = max(seg[0], point - seconds / 2) if seg[0] <= point <= seg[1] else seg[0]
        span = (round(begin, 3), round(min(speech.duration, begin + seconds), 3))
        if all(abs(span[0] - s[0]) >= seconds / 2 for s in spans):
            spans.append(span)
    return sorted(spans)


def _report(windows: list[LanguageWindow], weights: list[float], scores: list[dict[str, float]]) -> LanguageReport:
    total: dict[str, float] = defaultdict(float)
    for weight, score in zip(weights, scores, strict=True):
        for code, p in score.items():
            total[code] += weight * p
    mass = sum(weights) or 1.0
    ranked = sorted(((p / mass, code) for code, p in total.items()), reverse=True)
    sure = {w.language for w in windows if w.probability >= SURE}
    mixed = len(sure) > 1 and len(ranked) > 1 and ranked[1][0] >= MIXED_SHARE and ranked[1][1] in sure
    languages = tuple(code for share, code in ranked if code in sure and share >= MIXED_SHARE) if mixed else ()
    return LanguageReport(language=ranked[0][1], probability=round(ranked[0][0], 4), detected=True, mixed=mixed,
                          languages=languages, windows=tuple(windows))


@operator("speech.detect_language", weight=2)
def detect_language(audio: SourceRef | StoredFile, speech: SpeechMap, *, params: WhisperParams,
                    ctx: OpContext) -> LanguageReport:
    """The spoken language, probed across the recording (``language: auto``), or the one given."""
    if params.language != "auto":
        return LanguageReport(language=params.language or "en", probability=1.0, detected=False)
    speech = SpeechMap.model_validate(speech)
    model = load_model(resolve_model(params.model), params.compute_type, threads_for(params))
    windows, weights, scores = [], [], []
    with ctx.storage.reading(media_path(audio)) as local:
        for i, (start, end) in enumerate(spans := probe_spans(speech)):
            samples = decode_range(local, start, end)
            score = language_probabilities(model, samples)
            code = max(score, key=score.__getitem__)
            windows.append(LanguageWindow(start=start, end=end, language=code, probability=round(score[code], 4)))
            weights.append(max(1e-3, sum(min(b, end) - max(a, start) for a, b in speech.segments
                                         if min(b, end) > max(a, start))))
            scores.append(score)
            ctx.progress((i + 1) / len(spans))
    if not windows:
        return LanguageReport(language="en", probability=0.0, detected=False)
    report = _report(windows, weights, scores)
    heard = ", ".join(f"{w.start:.0f}–{w.end:.0f} s: {w.language} {w.probability:.2f}" for w in windows)
    ctx.log(f"Language: {report.language} ({report.probability:.2f})"
            + (f", mixed: {', '.join(report.languages)}" if report.mixed else "") + f" [{heard}]")
    return report
