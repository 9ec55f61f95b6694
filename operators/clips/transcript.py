"""``clips.transcript``: the transcript a generate_clip job works from, given or made in the graph.

- Given (``transcript_asset_id``): its JSON is read from storage, and the job's
  ``outputs.transcript`` is that asset's record, marked ``reused: true``. No new asset is made:
  the clip versions' captions name the asset that already exists.
- Made (the graph transcribed the source): the transcribe steps' JSON file, published as a
  new ``transcript`` asset of this job (with the source in its lineage).
"""

from __future__ import annotations

from pydantic import ValidationError

from operators.clips.models import TranscriptUsed
from operators.clips.request import GivenTranscript
from operators.context import OpContext
from operators.errors import OperatorError
from operators.registry import operator
from operators.speech.models import CaptionFiles, Transcript

__all__ = ["pick_transcript"]


@operator("clips.transcript", weight=0.2)
def pick_transcript(given: GivenTranscript | None = None, made: Transcript | None = None,
                    files: CaptionFiles | None = None, *, ctx: OpContext) -> TranscriptUsed:
    """The given transcript (read from its asset) or the one the graph made."""
    if given is not None:
        given = GivenTranscript.model_validate(given)
        try:
            with ctx.storage.reading(given.path) as local:
                raw = local.read_bytes()
            transcript = Transcript.model_validate_json(raw)
        except FileNotFoundError:
            raise OperatorError(f"transcript asset {given.id}: its file is missing from storage") from None
        except ValidationError as exc:
            raise OperatorError(f"transcript asset {given.id} is not a transcribe job's JSON "
                                f"({exc.error_count()} problem(s), first: {exc.errors()[0]['msg']})") from None
        record = {"id": given.id, "kind": given.kind, "content_type": given.content_type, "size": len(raw),
                  "project_id": given.project_id, "derived_from": list(given.derived_from),
                  "url": f"/assets/{given.id}/content", "reused": True}
        ctx.log(f"Using transcript {given.id}: {len(transcript.words)} words over {transcript.duration:.1f} s")
        return TranscriptUsed(path=given.path, asset=record, asset_id=given.id, transcript=transcript)
    if made is None or files is None:
        raise OperatorError("no transcript: none was given and the graph made none")
    files = CaptionFiles.model_validate(files)
    return TranscriptUsed(path=files.transcript.path, asset=files.transcript, asset_id=None,
                          transcript=Transcript.model_validate(made))
