"""Media operators of the ingest pipeline (PyAV only, never the ffmpeg CLI).

The ingest graph wires them as::

    probe ─┬─ split_keyframes ─ transcode_chunk (one task per chunk) ─┐
           ├─ transcode_audio ────────────────────────────────────────┴─ join_chunks
           ├─ poster, sprite
           └─ extract_audio ─ waveform

Modules: ``info`` (the models passed between tasks), ``probe``, ``chunks``, ``transcode``,
``join``, ``audio`` (AAC track, WAV, waveform) and ``thumbnails`` (poster, sprite); ``colour``
and ``tonemap`` turn every source's colours (tagged or not, SDR or HDR) into the BT.709 limited
range that proxies, posters, renders and exports are written in.
"""
