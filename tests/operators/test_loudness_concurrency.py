"""Loudness measured from the frames of each call's own filter graph, never from FFmpeg's log.

Issue 20: pass 1 parsed loudnorm's JSON out of a per-thread log capture while changing the
process-wide log level around it, so with several exports at once the measurement went missing
("the analysis pass gave no measurement") or was another job's. These tests pin the values
against BS.1770 and loudnorm, and run twelve measurements at once on twelve different files.
"""

from __future__ import annotations

import json
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
import av.filter
import numpy as np
import pytest

from operators.export.loudness import LoudnessMeasurement, LoudnessTarget, measure_file, measure_loudness
from operators.media.probe import probe
from operators.types import SourceRef
from tests.mediagen import media_ctx

RATE = 48000
#: BS.1770-4: a full-scale 997 Hz sine in one channel measures -3.01 LUFS.
FULL_SCALE_SINE_LUFS = -3.01


def _wav(path: Path, samples: np.ndarray) -> Path:
    """A 16-bit WAV of ``samples`` (channels x samples, floats in -1..1), written with PyAV."""
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=RATE)
        stream.layout = layout
        for i in range(0, samples.shape[1], 4800):
            part = np.ascontiguousarray(samples[:, i:i + 4800], dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(part, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = RATE, i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _sine(amplitude: float, seconds: float = 3.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return np.repeat((amplitude * np.sin(2 * np.pi * 997 * t))[None, :], channels, axis=0)


def _expected_lufs(amplitude: float, channels: int = 1) -> float:
    """BS.1770 loudness of a 997 Hz sine: channels add their powers."""
    return FULL_SCALE_SINE_LUFS + 20 * math.log10(amplitude) + 10 * math.log10(channels)


def _loudnorm(path: Path) -> dict[str, float]:
    """What FFmpeg's own loudnorm analysis reports (PyAV's helper; only safe with no other thread)."""
    with av.open(str(path)) as container:
        text = av.filter.loudnorm.stats("i=-14:tp=-1:lra=11", container.streams.audio[0])
    return {key: float(value) for key, value in json.loads(text).items() if key.startswith("input_")}


def _measure(root: Path, name: str, target: float = -14.0) -> LoudnessMeasurement:
    ctx = media_ctx(root)
    source = SourceRef(path=name)
    measured = measure_loudness(source, probe(source, ctx=ctx), LoudnessTarget(target=target), ctx=ctx)
    assert measured is not None
    return measured


@pytest.mark.parametrize(("amplitude", "channels"), [(1.0, 1), (0.5, 2), (0.1, 1), (0.01, 2)])
def test_a_sine_measures_its_bs1770_loudness_and_what_loudnorm_reports(
        tmp_path: Path, amplitude: float, channels: int) -> None:
    path = _wav(tmp_path / "sine.wav", _sine(amplitude, channels=channels))
    measured = _measure(tmp_path, "sine.wav")
    expected = _expected_lufs(amplitude, channels)
    assert abs(measured.integrated - expected) < 0.2, (measured, expected)
    assert abs(measured.true_peak - 20 * math.log10(amplitude)) < 0.1, measured
    # A steady tone: no loudness range, and the relative gate sits 10 LU under the loudness.
    assert measured.lra < 0.1 and abs(measured.threshold - (measured.integrated - 10)) < 0.05, measured

    reference = _loudnorm(path)
    assert abs(measured.integrated - reference["input_i"]) < 0.2, (measured, reference)
    assert abs(measured.true_peak - reference["input_tp"]) < 0.1, (measured, reference)
    assert abs(measured.threshold - reference["input_thresh"]) < 0.2, (measured, reference)
    assert abs(measured.lra - reference["input_lra"]) < 0.5, (measured, reference)

    checked = measure_file(path)
    assert abs(checked["integrated"] - measured.integrated) < 0.01 and checked["true_peak"] == measured.true_peak


def test_quiet_passages_are_gated_out_as_bs1770_says(tmp_path: Path) -> None:
    # 2 s at -9.03 LUFS, then 2 s 31 dB quieter: under the relative gate, so left out.
    _wav(tmp_path / "steps.wav", np.concatenate([_sine(0.5, 2.0), _sine(0.0141, 2.0)], axis=1))
    measured = _measure(tmp_path, "steps.wav")
    # 400 ms blocks every 100 ms: 17 wholly loud, 3 across the step (3/4, 1/2, 1/4 loud) pass the
    # gate at about -22 LUFS; the 17 quiet ones do not.
    loud = _expected_lufs(0.5)
    assert abs(measured.integrated - (loud + 10 * math.log10(18.5 / 20))) < 0.1, measured
    assert abs(measured.threshold - (loud + 10 * math.log10(18.5 / 37) - 10)) < 0.1, measured


def test_silence_and_a_stream_shorter_than_one_block_measure_as_silent(tmp_path: Path) -> None:
    _wav(tmp_path / "silence.wav", np.zeros((1, RATE)))
    _wav(tmp_path / "blip.wav", _sine(0.5, 0.3))
    for name in ("silence.wav", "blip.wav"):
        measured = _measure(tmp_path, name)
        assert measured.silent and measured.threshold == -70.0 and measured.target_offset == 0.0, measured


def test_twelve_measurements_at_once_each_get_their_own_file(tmp_path: Path) -> None:
    # Twelve files 3 dB apart, stereo and mono; odd ones aim high enough that pass 1 also runs
    # loudnorm's dynamic mode (target_offset), so loudnorm graphs run in several threads too.
    jobs: list[tuple[str, float, int, float]] = []
    for i in range(12):
        amplitude, channels = 10 ** (-3 * i / 20), 1 + i % 2
        name = f"level{i:02d}.wav"
        _wav(tmp_path / name, _sine(amplitude, seconds=2.0, channels=channels))
        jobs.append((name, amplitude, channels, -5.0 if i % 2 else -14.0))
    start = threading.Barrier(len(jobs))

    def run(job: tuple[str, float, int, float]) -> tuple[LoudnessMeasurement, dict[str, float]]:
        name, _, _, target = job
        start.wait(timeout=60)
        return _measure(tmp_path, name, target), measure_file(tmp_path / name)

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results: list[Any] = list(pool.map(run, jobs))
    for (name, amplitude, channels, target), (measured, checked) in zip(jobs, results, strict=True):
        expected = _expected_lufs(amplitude, channels)
        assert abs(measured.integrated - expected) < 0.2, (name, expected, measured)
        assert abs(measured.true_peak - 20 * math.log10(amplitude)) < 0.1, (name, amplitude, measured)
        assert abs(checked["integrated"] - expected) < 0.2, (name, expected, checked)
        assert math.isfinite(measured.target_offset) and abs(measured.target_offset) < 3, (name, measured)
