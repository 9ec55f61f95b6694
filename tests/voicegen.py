"""Test material for voice enhance and chapters: noisy espeak speech, SI-SDR, a four-topic talk."""

from __future__ import annotations

import numpy as np

from operators.speech.models import Transcript, TranscriptSegment, Word
from tests import speechgen as sg

__all__ = ["TOPICS", "noise", "si_sdr", "speech_48k", "talk_parts", "talk_transcript", "upsample"]

TOPICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cooking", (
        "Today we start in the kitchen with a simple tomato sauce.",
        "Chop two onions and fry them slowly in olive oil.",
        "Add crushed tomatoes, garlic and a pinch of salt to the pan.",
        "Let the sauce simmer for twenty minutes while the pasta boils.",
        "Taste the sauce and stir in fresh basil before serving.",
    )),
    ("astronomy", (
        "Now let us look up at the night sky and the stars.",
        "A telescope shows the rings of Saturn and the moons of Jupiter.",
        "Light from distant galaxies travels millions of years to reach us.",
        "When a massive star dies it can collapse into a black hole.",
        "Astronomers measure the planets and their orbits around the sun.",
    )),
    ("football", (
        "Next we talk about football and the big match on Saturday.",
        "The striker scored a goal in the first minute of the game.",
        "The goalkeeper saved a penalty and the fans in the stadium cheered.",
        "The coach changed the team at half time and the players ran harder.",
        "The referee blew the whistle and the home team won the league.",
    )),
    ("banking", (
        "Finally a word about banks and your savings account.",
        "The bank pays interest on the money you deposit each month.",
        "A mortgage is a loan to buy a house, repaid over many years.",
        "When interest rates rise, loans and credit cards cost more.",
        "Check your bank statement and keep your account number private.",
    )),
)


def talk_parts(gap: float = 0.6) -> list[str | float]:
    """The talk for :func:`speechgen.compose`: 0.5 s of silence, then every sentence, ``gap`` apart."""
    parts: list[str | float] = [0.5]
    for _, sentences in TOPICS:
        for s in sentences:
            parts += [s, gap]
    return parts


def talk_transcript(gap: float = 0.6) -> tuple[Transcript, list[float]]:
    """A transcript of the talk from espeak's sentence timings (words spread evenly over each
    sentence), and the true start of each topic."""
    layout = sg.compose(talk_parts(gap))
    segments, truth, k = [], [], 0
    for _, sentences in TOPICS:
        truth.append(layout.utterances[k].start)
        for _ in sentences:
            u = layout.utterances[k]
            words = u.text.split()
            step = (u.end - u.start) / len(words)
            segments.append(TranscriptSegment(start=u.start, end=u.end, text=u.text, words=tuple(
                Word(word=" " + w, start=u.start + i * step, end=u.start + (i + 0.9) * step, probability=1.0)
                for i, w in enumerate(words))))
            k += 1
    return Transcript(language="en", duration=layout.duration, segments=tuple(segments)), truth


def upsample(audio16: np.ndarray) -> np.ndarray:
    """16 kHz to 48 kHz by linear interpolation (independent of the code under test)."""
    n = audio16.size * 3
    return np.interp(np.arange(n) / 3, np.arange(audio16.size), audio16).astype(np.float32)


def speech_48k(sentences: list[str], gaps: list[float]) -> np.ndarray:
    return upsample(sg.compose_sentences(sentences, gaps, lead=0.5, tail=0.5).audio)


def noise(n: int, colour: str, seed: int = 0) -> np.ndarray:
    """Unit-RMS white noise, or pink (1/f power) shaped in the frequency domain."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(n)
    if colour == "pink":
        spectrum = np.fft.rfft(white)
        f = np.arange(spectrum.size)
        spectrum[1:] /= np.sqrt(f[1:])
        spectrum[0] = 0
        white = np.fft.irfft(spectrum, n)
    return (white / np.sqrt(np.mean(white**2))).astype(np.float32)


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio, dB (Le Roux et al. 2019)."""
    est, ref = estimate.astype(np.float64), reference.astype(np.float64)
    target = (est @ ref) / (ref @ ref) * ref
    residual = est - target
    return float(10 * np.log10((target @ target) / (residual @ residual)))
