"""Voice enhance through the render job: a clip marked ``enhance`` is cleaned before the mix.

Real Redis, Dask workers and the bundled DeepFilterNet3 runtime: a noisy speech recording is
uploaded, rendered twice on an audio track (as it is, and with ``enhance: true``), and the
rendered AAC sound is compared with the clean speech (joins are tested in tests/test_voice.py).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from litestar.testing import TestClient

from tests import speechgen as sg
from tests import voicegen as vg
from tests.conftest import wait_for

pytestmark = pytest.mark.skipif(not sg.have_espeak(), reason=sg.ESPEAK_MISSING)


def _render_sound(client: TestClient[Any], asset: str, enhance: bool) -> np.ndarray:
    timeline = {"canvas": {"width": 64, "height": 48, "fps": 10},
                "tracks": [{"type": "audio", "clips": [{"asset": asset, "in": 0.5, "out": 6.5, "enhance": enhance}]}]}
    response = client.post("/jobs/?job_type=render", json={"project_id": "proj_voice", "timeline": timeline,
                                                           "output": {"preset": "ultrafast", "crf": 40}})
    assert response.status_code == 202, response.text
    job = wait_for(client, response.json()["id"], timeout=180)
    assert job["status"] == "completed", job["error_message"]
    data = client.get(job["result_payload"]["outputs"]["video"]["url"]).content
    with av.open(io.BytesIO(data)) as container:
        return np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)]).astype(np.float32)


def test_render_enhance_cleans_the_clip_sound(client: TestClient[Any], media_root: Path, tmp_path: Path) -> None:
    clean16 = sg.compose_sentences(list(sg.SENTENCES[3:6]), [0.5], lead=0.6, tail=0.6).audio[: 16000 * 7]
    clean16 = (clean16 * 0.3 / np.abs(clean16).max()).astype(np.float32)
    noisy16 = clean16 + vg.noise(clean16.size, "pink", seed=11) * np.sqrt(np.mean(clean16**2))
    sg.write_wav(tmp_path / "noisy.wav", noisy16)
    response = client.post("/assets/?project_id=proj_voice&filename=noisy.wav", content=(tmp_path / "noisy.wav").read_bytes())
    assert response.status_code == 201, response.text
    asset = response.json()["id"]
    reference = vg.upsample(clean16)[24000 : 24000 + 6 * 48000]
    plain, enhanced = (_render_sound(client, asset, flag)[: reference.size] for flag in (False, True))
    before, after = vg.si_sdr(plain, reference), vg.si_sdr(enhanced, reference)
    print(f"render enhance: SI-SDR {before:.2f} -> {after:.2f} dB")
    assert after - before >= 6.0


def test_export_denoise_cleans_the_sound(client: TestClient[Any], tmp_path: Path) -> None:
    clean16 = sg.compose_sentences(list(sg.SENTENCES[6:9]), [0.5], lead=0.6, tail=0.6).audio
    clean16 = (clean16 * 0.3 / np.abs(clean16).max()).astype(np.float32)
    noisy16 = clean16 + vg.noise(clean16.size, "white", seed=13) * np.sqrt(np.mean(clean16**2))
    sg.write_wav(tmp_path / "noisy.wav", noisy16)
    response = client.post("/assets/?project_id=proj_voice&filename=noisy.wav", content=(tmp_path / "noisy.wav").read_bytes())
    asset = response.json()["id"]
    response = client.post("/jobs/?job_type=export", json={"project_id": "proj_voice", "source_asset_id": asset,
                                                           "presets": ["audio-wav"], "denoise": True,
                                                           # loudness: null: the true-peak limiter that lifts this
                                                           # peaky speech to -14 LUFS is not linear, which SI-SDR
                                                           # would count as distortion (loudness of such speech:
                                                           # tests/operators/test_loudness_short.py)
                                                           "loudness": None})
    assert response.status_code == 202, response.text
    job = wait_for(client, response.json()["id"], timeout=180)
    assert job["status"] == "completed", job["error_message"]
    log = " ".join(e["message"] for e in job["result_payload"]["log"])
    assert "Noise reduction: joined" in log
    outputs = job["result_payload"]["outputs"]
    with av.open(io.BytesIO(client.get(outputs["audio-wav"]["url"]).content)) as container:
        out = np.concatenate([f.to_ndarray().reshape(container.streams.audio[0].channels, -1)[0]
                              for f in container.decode(audio=0)]).astype(np.float32) / 32768
    reference = vg.upsample(clean16)[: out.size]
    gain = vg.si_sdr(out[: reference.size], reference) - vg.si_sdr(vg.upsample(noisy16)[: reference.size], reference)
    print(f"export denoise: SI-SDR gain {gain:.2f} dB")
    assert gain >= 6.0
