"""Export: delivery presets (MP4, HEVC, WebM, AV1, GIF, HLS, audio), loudness targets, timeline files.

One module per idea: ``presets`` (the payload's preset list), ``loudness`` (two-pass loudnorm),
``plan`` (which encodings, chunks and packages a job needs), ``encode`` (one chunk to several
renditions), ``audio``, ``deliver`` (the final files, verified), ``hls``, ``gif``, ``timelines``
(OpenTimelineIO), ``sidecars`` (SRT/VTT captions), ``collect`` (the job's outputs).
"""
