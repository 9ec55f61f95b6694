"""Multilingual Whisper base against tiny.en (issue 23): real-time factor and WER on the same talks.

English: the 20 Harvard sentences of ``tests/speechgen.py`` read by espeak-ng (~67 s), transcribed by
tiny.en and by base. Spanish and German: short talks read by espeak-ng's voices, by base only (tiny.en is
English-only), with ``language`` given and with it detected (``speech.detect_language``'s probes). Each
is faster-whisper's own ``WhisperModel.transcribe`` (int8, beam 5, the machine's cores), the model load not
counted; RTF = wall / audio seconds. Writes ``bench/out/languages.json``.

Run: ``.venv/bin/python bench/languages.py``
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from operators.speech.whisper import load_model, resolve_model  # noqa: E402
from tests import speechgen as sg  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "languages.json"
SPANISH = ["Buenos días. Hoy vamos a hablar de la cocina española y de sus platos más famosos.",
           "El fin de semana pasado fuimos a la playa con nuestros amigos y comimos pescado fresco.",
           "La ciudad tiene muchos museos, parques y restaurantes muy buenos.",
           "Por la tarde estudiamos en la biblioteca y después tomamos un café."]
GERMAN = ["Guten Morgen. Heute sprechen wir über die deutsche Geschichte und die großen Städte.",
          "Am Wochenende fahren wir mit dem Zug nach Berlin und besuchen unsere Freunde.",
          "Im Sommer gehen wir oft im Wald spazieren und trinken danach einen Kaffee.",
          "Meine Schwester arbeitet in einem Krankenhaus und hilft vielen Menschen."]


def _talk(voice: str, sentences: list[str]) -> np.ndarray:
    gap = np.zeros(int(0.8 * sg.RATE), np.float32)
    return np.concatenate([p for s in sentences for p in (sg.espeak(s, voice=voice), gap)])


def _run(model_name: str, audio: np.ndarray, reference: str, language: str | None) -> dict[str, Any]:
    model = load_model(resolve_model(model_name), "int8", 2)
    started = time.perf_counter()
    segments, info = model.transcribe(audio, language=language, beam_size=5)
    text = " ".join(s.text for s in segments)
    wall = time.perf_counter() - started
    return {"model": model_name, "language": info.language, "language_probability": round(info.language_probability, 3),
            "rtf": round(wall / (audio.size / sg.RATE), 3), "wer": round(sg.wer(reference, text), 3),
            "audio_seconds": round(audio.size / sg.RATE, 1)}


def main() -> None:
    english = sg.minute_of_speech()
    results = {"english": [_run(m, english.audio, " ".join(u.text for u in english.utterances), "en")
                           for m in ("tiny.en", "base")]}
    for name, voice, sentences in (("spanish", "es", SPANISH), ("german", "de", GERMAN)):
        audio = _talk(voice, sentences)
        results[name] = [_run("base", audio, " ".join(sentences), voice), _run("base", audio, " ".join(sentences), None)]
    for name, runs in results.items():
        for r in runs:
            print(f"{name:8} {r['model']:8} lang={r['language']} ({r['language_probability']}) RTF {r['rtf']:.3f} "
                  f"WER {r['wer']:.3f} over {r['audio_seconds']} s")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
