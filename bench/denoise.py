"""Noise reduction figures: DeepFilterNet3's real-time factor per core, and its SI-SDR gain.

Run: ``.venv/bin/python bench/denoise.py [--seconds 30] [--threads 1]``

espeak-ng speech (the Harvard sentences, 48 kHz) is mixed with white and pink noise at 0 dB SNR and
cleaned by ``operators.voice.dfn.denoise`` in one pass on one thread (the C runtime's tract engine
runs a frame at a time on the calling thread). Real-time factor = CPU seconds / seconds of sound;
a Dask fan-out of chunks divides the wall time by the worker threads. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from operators.voice.dfn import denoise  # noqa: E402
from tests import speechgen as sg  # noqa: E402
from tests import voicegen as vg  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of speech to clean")
    args = parser.parse_args()
    clean = vg.upsample(sg.minute_of_speech().audio)[: round(args.seconds * 48000)]
    clean = (clean * 0.3 / np.abs(clean).max()).astype(np.float32)
    figures: dict[str, object] = {"seconds": round(clean.size / 48000, 2)}
    denoise(clean[:48000])  # load the library and model once
    for colour in ("white", "pink"):
        noisy = clean + vg.noise(clean.size, colour) * np.sqrt(np.mean(clean**2))
        cpu, wall = time.process_time(), time.perf_counter()
        out = denoise(noisy)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        figures[colour] = {"si_sdr_in": round(vg.si_sdr(noisy, clean), 2), "si_sdr_out": round(vg.si_sdr(out, clean), 2),
                           "gain_db": round(vg.si_sdr(out, clean) - vg.si_sdr(noisy, clean), 2),
                           "rtf_cpu": round(cpu / (clean.size / 48000), 4), "rtf_wall": round(wall / (clean.size / 48000), 4)}
    kept = denoise(clean)
    figures["clean"] = {"si_sdr_vs_itself": round(vg.si_sdr(kept, clean), 2),
                        "level_db": round(float(20 * np.log10(np.sqrt(np.mean(kept**2)) / np.sqrt(np.mean(clean**2)))), 2)}
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
