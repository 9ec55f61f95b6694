"""``export.collect``: the export's outputs, one field per built-in preset, custom ones by name.

``result_payload.outputs.<preset>`` is each built-in preset's file (for ``hls`` its master
playlist), null when it was not asked for or had nothing to export (the log says why);
``custom.<name>`` holds the custom presets' files, ``hls_files.<name>`` every playlist and
segment of each HLS package, and ``loudness`` the measured loudness of the source and of every
normalised output (``left_as_is`` says why there is none: a source too short to measure, or silent).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import create_model

from operators.context import OpContext
from operators.export.audio import AudioTrack
from operators.export.hls import HlsOutput
from operators.export.loudness import SILENT_LUFS, LoudnessMeasurement, LoudnessTarget
from operators.export.plan import ExportPlan
from operators.export.presets import BUILTIN, output_key
from operators.registry import operator
from operators.types import Frozen, StoredFile

__all__ = ["ExportFiles", "collect_exports"]

#: The export's outputs, typed (the OpenAPI document's ``ExportOutputs`` is made from it): one field per
#: built-in preset (``mp4_1080p``; the graph names it ``mp4-1080p``), and the custom, HLS and loudness ones.
ExportFiles: type[Frozen] = create_model(  # type: ignore[call-overload]
    "ExportFiles", __base__=Frozen, __doc__="An export's files, by preset, and its loudness report.",
    **{output_key(name): (StoredFile | None, None) for name in BUILTIN},
    custom=(dict[str, StoredFile | None], {}), hls_files=(dict[str, list[StoredFile]], {}),
    loudness=(dict[str, Any] | None, None))


@operator("export.collect", weight=0.1)
def collect_exports(plan: ExportPlan, deliveries: list[StoredFile], hls: list[HlsOutput], gifs: list[StoredFile],
                    audio: list[AudioTrack], measured: LoudnessMeasurement | None = None,
                    loudness: LoudnessTarget | None = None, *, ctx: OpContext) -> ExportFiles:  # type: ignore[valid-type]
    """Files by preset name, HLS packages' files, and the loudness report."""
    files: dict[str, Any] = {}
    for stored in [*deliveries, *gifs]:
        files[str(stored.meta.get("preset"))] = stored
    hls_files: dict[str, list[StoredFile]] = {}
    for package in hls:
        name = str(package.master.meta.get("preset"))
        files[name] = package.master
        hls_files[name] = package.files
    out: dict[str, Any] = {output_key(name): files.get(name) for name in BUILTIN}
    out["custom"] = {name: files.get(name) for name in plan.names if name not in BUILTIN}
    out["hls_files"] = hls_files
    out["loudness"] = _report(plan, audio, measured, loudness)
    missing = [n for n in plan.names if files.get(n) is None and n not in plan.skipped]
    if missing:
        ctx.log(f"No file for {', '.join(missing)}")
    ctx.progress(1.0)
    return ExportFiles(**out)


def _report(plan: ExportPlan, audio: list[AudioTrack], measured: LoudnessMeasurement | None,
            loudness: LoudnessTarget | None) -> dict[str, Any] | None:
    """The loudness report: this job's own measurement (its node's result) and its own encodings' files."""
    if loudness is None or measured is None:
        return None
    measured_by_key = {t.key: t.loudness for t in audio if t.loudness is not None}
    users = [(d.preset.name, d.audio) for d in plan.deliveries] + [(h.preset.name, h.audio) for h in plan.hls]
    outputs = {name: measured_by_key[key] for name, key in users if key in measured_by_key}
    report: dict[str, Any] = {
        "target": loudness.target, "true_peak_ceiling": loudness.true_peak,
        "input": {"integrated": _level(measured.integrated), "true_peak": _level(measured.true_peak),
                  "lra": round(measured.lra, 2), "threshold": round(measured.threshold, 2),
                  "duration": None if measured.duration is None else round(measured.duration, 3)},
        "outputs": outputs, "normalised": bool(outputs)}
    if measured.too_short:
        report["left_as_is"] = (f"too short to measure: {measured.duration:.2f}s of sound, and integrated loudness "
                                "needs at least 0.4 s")
    elif measured.silent:
        report["left_as_is"] = f"silent: its sound measures under {SILENT_LUFS:g} LUFS, so no gain is applied"
    return report


def _level(value: float) -> float | None:
    """A level in the report: None where there is none to give (-inf is not JSON)."""
    return round(value, 2) if math.isfinite(value) else None
