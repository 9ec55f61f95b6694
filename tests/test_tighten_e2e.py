"""The ``tighten`` job through the HTTP API: real Redis, real Dask workers, espeak speech, tiny.en, real renders.

One talk (``tests/tightengen.py``): six sentences with pauses of known length, and five fillers (um, uh,
hmm) spoken in the gaps, over a 25 fps video whose frames draw their own index, with room tone under it
all. The first job transcribes it and cuts the fillers (a dry run); the others reuse its transcript: the
three silence presets (dry runs), then renders (natural silences and fillers; a sentence removed by word
indices; a sentence deleted from the text) whose sound is transcribed again, and a clip version tightened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar.testing import TestClient

from tests import speechgen as sg
from tests import tightengen as tg
from tests.conftest import wait_for
from tests.mediagen import read_index

pytestmark = pytest.mark.skipif(not sg.have_espeak(), reason=sg.ESPEAK_MISSING)

PROJECT = "proj_tighten"
KEEP = 0.12
PRESETS = {"natural": 0.6, "fast": 0.3, "extra-fast": 0.15}
FRAME = 1 / tg.FPS


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return tg.indexed_talk_video(tmp_path_factory.mktemp("talk") / "talk.mp4", tg.talk().audio).read_bytes()


def upload(client: TestClient[Any], data: bytes, name: str = "talk.mp4") -> str:
    response = client.post(f"/assets/?project_id={PROJECT}&filename={name}", content=data)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def run(client: TestClient[Any], job_type: str = "tighten", query: str = "", timeout: float = 120,
        **payload: Any) -> dict[str, Any]:
    response = client.post(f"/jobs/?job_type={job_type}{query}", json={"project_id": PROJECT, **payload})
    assert response.status_code == 202, response.text
    job = wait_for(client, response.json()["id"], timeout=timeout)
    assert job["status"] == "completed", job["error_message"]
    return job


def removed(cuts: list[dict[str, Any]]) -> list[tuple[float, float]]:
    return [(c["start"], c["end"]) for c in cuts if not c["kept"]]


def inside(span: tuple[float, float], ranges: list[tuple[float, float]]) -> float:
    """Seconds of ``span`` that lie inside ``ranges``."""
    return sum(max(0.0, min(span[1], b) - max(span[0], a)) for a, b in ranges)


def kept_pause(pause: tuple[float, float], thr: float, lead: bool, tail: bool) -> float:
    """What the issue says a pause keeps: all of it up to ``thr``, else ``KEEP`` (half of it at either end)."""
    length = pause[1] - pause[0]
    return length if length <= thr else KEEP / 2 if lead or tail else KEEP


def test_tighten_cuts_fillers_silences_and_edited_words(client: TestClient[Any], video: bytes,
                                                        tmp_path: Path) -> None:
    talk = tg.talk()
    source = upload(client, video)
    first = run(client, source_asset_id=source, silences=None, render=False)
    check_fillers(client, talk, first)
    transcript = first["result_payload"]["outputs"]["transcript"]["id"]
    for preset in PRESETS:
        check_silences(client, talk, source, transcript, preset)
    check_render(client, talk, source, transcript, tmp_path, video)
    check_payload_problems(client, video, source, transcript)


def check_fillers(client: TestClient[Any], talk: tg.Talk, job: dict[str, Any]) -> None:
    outputs = job["result_payload"]["outputs"]
    cut = removed(outputs["cuts"])
    spoken = talk.fillers
    hit = [f for f in spoken if inside((f.start, f.end), cut) >= 0.8 * (f.end - f.start)]
    assert len(hit) >= 0.8 * len(spoken), (outputs["fillers"], cut)
    for sentence in talk.sentences:  # no real word is cut
        assert inside((sentence.start, sentence.end), cut) < 1e-3, (sentence, cut)
    reported = outputs["fillers"]
    assert all(f["found_in"] in ("words", "audio") and 0 <= f["confidence"] <= 1 for f in reported)
    assert all(any(abs((f["start"] + f["end"]) / 2 - (s.start + s.end) / 2) < 0.3 for f in reported) for s in hit)
    assert {c["reason"] for c in outputs["cuts"] if not c["kept"]} == {"filler"}
    # A dry run: the clip version and the transcript, nothing encoded, nothing chained.
    assets = client.get(f"/assets/?project_id={PROJECT}&job_id={job['id']}").json()
    assert [a["kind"] for a in assets] == ["transcript"], assets
    assert "chained_jobs" not in job["result_payload"]
    version = client.get(f"/clip-versions/{outputs['clip_version_id']}").json()
    meta = version["metadata"]
    assert meta["words_before"] > meta["words_after"] or meta["words_before"] == meta["words_after"]
    assert meta["seconds_saved"] == outputs["summary"]["seconds_saved"] > 0.8
    assert [(c["start"], c["end"], c["reason"]) for c in meta["cuts"]] == \
        [(c["start"], c["end"], c["reason"]) for c in outputs["cuts"] if not c["kept"]]


def check_silences(client: TestClient[Any], talk: tg.Talk, source: str, transcript: str, preset: str) -> None:
    captions = "lines" if preset == "fast" else "none"
    job = run(client, source_asset_id=source, transcript_asset_id=transcript, fillers=False,
              silences={"preset": preset}, captions=captions)
    outputs = job["result_payload"]["outputs"]
    tracks = client.get(f"/clip-versions/{outputs['clip_version_id']}").json()["timeline"]["tracks"]
    # The captions (asked for once) name the transcript and its source: its words follow the cuts.
    assert [(t["type"], t.get("transcript"), t.get("media")) for t in tracks[1:]] == \
        ([("captions", transcript, source)] if captions != "none" else [])
    assert [c["asset"] for c in tracks[0]["clips"]] == [source] * sum(c["kept"] for c in outputs["cuts"])
    thr, cuts = PRESETS[preset], outputs["cuts"]
    kept = [(c["start"], c["end"]) for c in cuts if c["kept"]]
    pauses = talk.pauses()
    expected = [kept_pause(p, thr, i == 0, i == len(pauses) - 1) for i, p in enumerate(pauses)]
    shrunk = sum(p[1] - p[0] > thr for p in pauses)
    speech = sum(u.end - u.start for u in talk.composed.utterances)
    # Known speech plus the room tone the pauses keep, within one frame per cut.
    assert abs(outputs["summary"]["duration_after"] - (speech + sum(expected))) <= shrunk * FRAME + 1e-6, \
        (preset, outputs["summary"], speech + sum(expected))
    for pause, keep in zip(pauses, expected, strict=True):  # long pauses shrink, short ones stay
        assert abs(inside(pause, kept) - keep) <= FRAME, (preset, pause, keep, inside(pause, kept))
    for u in talk.composed.utterances:  # no word clipped
        assert inside((u.start, u.end), kept) == pytest.approx(u.end - u.start, abs=1e-3), (preset, u)
    assert {c["reason"] for c in cuts if not c["kept"]} <= {"silence"}


def retranscribed(client: TestClient[Any], render_job: str) -> tuple[dict[str, Any], str]:
    """The render's record (once it completed), and its sound transcribed again by a transcribe job."""
    render = wait_for(client, render_job, timeout=120)
    assert render["status"] == "completed", render["error_message"]
    video = render["result_payload"]["outputs"]["video"]
    job = run(client, job_type="transcribe", source_asset_id=video["id"])
    text = client.get(job["result_payload"]["outputs"]["text"]["url"]).text
    return render, text


def sentence_words(words: list[dict[str, Any]], sentence: str) -> tuple[int, int]:
    """The first and last index of ``sentence``'s words in the transcript (matched by their text)."""
    tokens = [" ".join(sg.normalize(w["word"])) for w in words]
    target = sg.normalize(sentence)
    for i in range(len(tokens) - len(target) + 1):
        if tokens[i:i + len(target)] == target:
            return i, i + len(target) - 1
    raise AssertionError(f"{sentence!r} is not in the transcript: {tokens}")


def check_render(client: TestClient[Any], talk: tg.Talk, source: str, transcript: str, tmp_path: Path,
                 video: bytes) -> None:
    job = run(client, source_asset_id=source, transcript_asset_id=transcript, render=True)
    outputs = job["result_payload"]["outputs"]
    render, text = retranscribed(client, job["result_payload"]["chained_jobs"]["render"])
    assert render["clip_version_id"] == outputs["clip_version_id"]
    assert sg.wer(talk.script, text) == 0, text  # no word clipped, every filler gone
    data = client.get(render["result_payload"]["outputs"]["video"]["url"]).content
    kept = [c for c in outputs["cuts"] if c["kept"]]
    predicted = [i for c in kept for i in range(*c["frames"])]
    assert [read_index(g) for g in tg.decode_gray(data, tmp_path / "out.mp4")] == predicted
    check_joins(talk, kept, tg.decode_48k(data, tmp_path / "out.mp4"), tg.decode_48k(video, tmp_path / "in.mp4"))

    words = client.get(f"/assets/{transcript}/content").json()
    words = [w for s in words["segments"] for w in s["words"]]
    first, last = sentence_words(words, tg.B)
    cut_b = run(client, source_asset_id=source, transcript_asset_id=transcript, remove_words=[[first, last]],
                silences=None, render=True)
    _, text = retranscribed(client, cut_b["result_payload"]["chained_jobs"]["render"])
    lacks_exactly(text, talk, tg.B)
    cuts_exactly(cut_b["result_payload"]["outputs"]["cuts"], talk, tg.B)
    assert {c["reason"] for c in cut_b["result_payload"]["outputs"]["cuts"] if not c["kept"]} >= {"edit"}

    first, last = sentence_words(words, tg.D)
    edited = " ".join(w["word"].strip() for i, w in enumerate(words) if not first <= i <= last)
    cut_d = run(client, source_asset_id=source, transcript_asset_id=transcript, keep_text=edited, silences=None,
                render=True)
    _, text = retranscribed(client, cut_d["result_payload"]["chained_jobs"]["render"])
    lacks_exactly(text, talk, tg.D)
    cuts_exactly(cut_d["result_payload"]["outputs"]["cuts"], talk, tg.D)
    check_clip_version(client, talk, transcript, cut_b)


def lacks_exactly(text: str, talk: tg.Talk, sentence: str) -> None:
    """The output's words are the script's without ``sentence``: none of its own words is heard, both neighbours
    of the cut are whole, and the rest is the script (tiny.en may mishear a word or two out of context)."""
    got, rest = sg.normalize(text), talk.script.replace(sentence + " ", "")
    assert not set(sg.normalize(sentence)) - set(sg.normalize(rest)) & set(got), text
    i = [u.text for u in talk.sentences].index(sentence)
    before, after = talk.sentences[i - 1].text, talk.sentences[i + 1].text
    joined = " ".join(got)
    assert " ".join(sg.normalize(before)[-2:] + sg.normalize(after)[:2]) in joined, text
    assert sg.wer(rest, text) <= 0.1, text


def cuts_exactly(cuts: list[dict[str, Any]], talk: tg.Talk, sentence: str) -> None:
    """On the layout: ``sentence`` is cut whole, every other sentence kept whole."""
    kept = [(c["start"], c["end"]) for c in cuts if c["kept"]]
    for u in talk.sentences:
        assert inside((u.start, u.end), kept) == pytest.approx(0 if u.text == sentence else u.end - u.start,
                                                               abs=1e-3), (u, kept)


def check_joins(talk: tg.Talk, kept: list[dict[str, Any]], out: np.ndarray, source: np.ndarray) -> None:
    """The largest sample jump at a join is no larger than the largest in the source's own speech."""
    speech = max(float(np.abs(np.diff(source[round(u.start * 48000):round(u.end * 48000)])).max())
                 for u in talk.sentences)
    ends = np.cumsum([c["end"] - c["start"] for c in kept])[:-1]
    joins = [float(np.abs(np.diff(out[round(t * 48000) - 240:round(t * 48000) + 240])).max()) for t in ends]
    assert max(joins) <= speech, (joins, speech)


def check_clip_version(client: TestClient[Any], talk: tg.Talk, transcript: str, edited: dict[str, Any]) -> None:
    """A clip version (B cut out) tightened again, extra-fast: the next version of its clip, inside its ranges."""
    cv = client.get(f"/clip-versions/{edited['result_payload']['outputs']['clip_version_id']}").json()
    job = run(client, query=f"&clip_version_id={cv['id']}", transcript_asset_id=transcript, fillers=False,
              silences={"preset": "extra-fast"})
    new = client.get(f"/clip-versions/{job['result_payload']['outputs']['clip_version_id']}").json()
    assert (new["clip_id"], new["version"], new["name"]) == (cv["clip_id"], 2, cv["name"])
    before = [(c["in"], c["out"]) for c in cv["timeline"]["tracks"][0]["clips"]]
    kept = [(c["start"], c["end"]) for c in job["result_payload"]["outputs"]["cuts"] if c["kept"]]
    assert all(inside(k, [(float_time(a), float_time(b)) for a, b in before]) == pytest.approx(k[1] - k[0])
               for k in kept)
    assert inside((talk.composed.utterances[1].start, talk.composed.utterances[1].end), kept) == 0
    assert job["result_payload"]["outputs"]["summary"]["seconds_saved"] > 0.5


def float_time(value: Any) -> float:
    from fractions import Fraction

    return float(Fraction(str(value)))


def check_payload_problems(client: TestClient[Any], video: bytes, source: str, transcript: str) -> None:
    other = upload(client, video, "other.mp4")

    def post(**payload: Any) -> dict[str, Any]:
        response = client.post("/jobs/?job_type=tighten", json={"project_id": PROJECT, **payload})
        assert response.status_code == 422, response.text
        (error,) = response.json()["detail"]
        return error

    error = post(source_asset_id=source, transcript_asset_id=transcript, remove_words=[[0, 2], [5, 9999]])
    assert error["loc"] == ["body", "remove_words", 1] and "past the transcript's last word" in error["msg"], error
    text = client.get(f"/assets/{transcript}/content").json()
    edited = " ".join(s["text"] for s in text["segments"]).replace("juice", "banana juice")
    error = post(source_asset_id=source, transcript_asset_id=transcript, keep_text=edited)
    assert error["loc"] == ["body", "keep_text"] and "'banana'" in error["msg"], error
    error = post(source_asset_id=other, transcript_asset_id=transcript)
    assert error["loc"] == ["body", "transcript_asset_id"] and f"not a transcript of {other}" in error["msg"], error
    error = post(source_asset_id=source, remove_words=[[0, 1]])
    assert error["loc"] == ["body", "remove_words"] and "needs transcript_asset_id" in error["msg"], error
    error = post(source_asset_id=source, silences={"preset": "slow"})
    assert error["loc"][:3] == ["body", "silences", "preset"], error


def test_the_job_type_is_listed_with_its_inputs(client: TestClient[Any]) -> None:
    inputs = client.get("/graphs/tighten").json()["inputs"]
    assert inputs["silences"]["default"] == {"preset": "natural"} and inputs["fillers"]["default"] is True
    assert inputs["remove_words"]["schema"]["type"] == "array" and inputs["keep_text"]["schema"]["type"] == "string"
    assert inputs["render"]["default"] is False and inputs["transcript_asset_id"]["schema"]["type"] == "string"
    schema = client.get("/schema/openapi.json").json()
    assert "tighten" in schema["components"]["schemas"]["JobType"]["enum"]
