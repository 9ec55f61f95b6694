"""Chapters: a four-topic espeak talk (cooking, astronomy, football, banking) cut into chapters.

The operator runs on a transcript made from espeak's sentence timings (fast, exact truth), and
once end to end through a ``transcribe`` job (real Redis, Dask, tiny.en, with denoise on a noisy
recording), where the boundaries are checked against when each topic's first sentence is spoken.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar.testing import TestClient

from operators import OpContext, Storage
from operators.chapters.formats import Chapter, merge_short, vtt_chapters, youtube_chapters
from operators.chapters.ops import ChapterParams, find_chapters
from operators.chapters.titles import titles
from tests import speechgen as sg
from tests import voicegen as vg
from tests.conftest import wait_for

pytestmark = pytest.mark.skipif(not sg.have_espeak(), reason=sg.ESPEAK_MISSING)


def _check(chapters: list[dict[str, Any]], truth: list[float], duration: float) -> float:
    assert len(chapters) == 4, chapters
    assert chapters[0]["start"] == 0.0 and chapters[-1]["end"] == pytest.approx(duration, abs=0.1)
    assert all(a["end"] == b["start"] for a, b in zip(chapters, chapters[1:]))
    errors = [abs(c["start"] - t) for c, t in zip(chapters[1:], truth[1:])]
    titled = [c["title"] for c in chapters]
    assert all(t.strip() for t in titled) and len(set(titled)) == 4, titled
    assert max(errors) <= 5.0, (errors, chapters)
    return max(errors)


def test_four_topics_become_four_titled_chapters(tmp_path: Path) -> None:
    transcript, truth = vg.talk_transcript()
    ctx = OpContext(job_id="job_ch", node="chapters", storage=Storage(str(tmp_path)))
    found = find_chapters(transcript, params=ChapterParams(), ctx=ctx)
    chapters = [c.model_dump() for c in found.chapters]
    error = _check(chapters, truth, transcript.duration)
    print(f"boundary error at most {error:.2f}s; titles {[c['title'] for c in chapters]}")
    lines = (tmp_path / found.text.path).read_text().splitlines()
    assert lines[0].startswith("0:00 ") and len(lines) == 4
    assert all(re.fullmatch(r"\d+:\d\d .+", line) for line in lines)
    vtt = (tmp_path / found.vtt.path).read_text()
    assert vtt.startswith("WEBVTT\n") and vtt.count(" --> ") == 4
    assert [c["title"] for c in chapters] == re.findall(r"--> [\d:.]+\n(.+)\n", vtt)
    assert (found.text.kind, found.vtt.kind, found.vtt.content_type) == ("chapters_text", "chapters_vtt", "text/vtt")


def test_titles_are_distinctive_and_short_chapters_merge() -> None:
    got = titles(["the sauce and the pasta, more sauce", "the stars and the sauce", "goal goal and the sauce"])
    assert got[0] == "Sauce" and got[2] == "Goal" and "sauce" not in got[1].lower() and len(set(got)) == 3
    merged = merge_short([(0, 30, 0), (30, 35, 1), (35, 80, 2), (80, 84, 3)], 10)
    assert [(a, b, g) for a, b, g in merged] == [(0, 35, [0, 1]), (35, 84, [2, 3])]
    assert merge_short([(0, 4, 0), (4, 30, 1)], 10) == [(0, 30, [0, 1])]
    text = youtube_chapters([Chapter(start=0, end=75.5, title="A"), Chapter(start=75.5, end=3700, title="B")])
    assert text == "0:00 A\n1:15 B\n"
    assert "01:01:40.000" in vtt_chapters([Chapter(start=0, end=3700, title="A")])


def test_transcribe_with_denoise_and_chapters(client: TestClient[Any], media_root: Path) -> None:
    layout = sg.compose(vg.talk_parts())
    noisy = layout.audio + vg.noise(layout.audio.size, "white", seed=7) * 0.1 * np.sqrt(np.mean(layout.audio**2))
    sg.write_wav(media_root / "talk.wav", noisy)
    truth = [layout.utterances[5 * k].start for k in range(4)]
    bad = client.post("/jobs/?job_type=transcribe", json={"project_id": "p", "source_uri": "talk.wav",
                                                          "chapters": "maybe", "denoise": 3})
    assert bad.status_code == 422, bad.text
    assert {tuple(e["loc"]) for e in bad.json()["detail"]} == {("body", "chapters"), ("body", "denoise")}
    job = client.post("/jobs/?job_type=transcribe", json={"project_id": "p", "source_uri": "talk.wav",
                                                          "chapters": True, "denoise": True})
    assert job.status_code == 202, job.text
    done = wait_for(client, job.json()["id"], timeout=240)
    assert done["status"] == "completed", done
    log = [e["message"] for e in done["result_payload"]["log"]]
    assert any("Noise reduction:" in m and "chunk(s)" in m for m in log), log
    out = done["result_payload"]["outputs"]["chapters"]
    error = _check(out["chapters"], truth, layout.duration)
    print(f"transcribe e2e: boundary error at most {error:.2f}s; titles {[c['title'] for c in out['chapters']]}")
    for name, kind in (("text", "chapters_text"), ("vtt", "chapters_vtt")):
        assert out[name]["kind"] == kind and out[name]["id"].startswith("asset_")
        body = client.get(f"/assets/{out[name]['id']}/content").text
        assert all(c["title"] in body for c in out["chapters"])
