"""``generate_clip``: the moments of a long talk worth posting as shorts, ranked and explained.

One idea per module: :mod:`.sentences` (word timings to sentences), :mod:`.embeddings`
(all-MiniLM-L6-v2 int8 on onnxruntime), :mod:`.topics` (TextTiling), :mod:`.candidates`
(spans cut in silences), :mod:`.scoring` (named components and reasons), :mod:`.select`
(non-maximum suppression), :mod:`.loudness` (the audio's envelope), :mod:`.find` (the
operator that ties those together), :mod:`.shots`, :mod:`.faces` and :mod:`.reframe` (a crop
window per shot), :mod:`.build` (each clip as a clip version's timeline), :mod:`.request` and
:mod:`.transcript` (the transcript given in the payload, checked at POST, or made in the graph).
"""
