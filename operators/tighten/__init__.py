"""``tighten``: a new clip version that leaves out silences, filler words and words edited out of the transcript.

One idea per module: :mod:`.models` (the values passed between the steps, the payload's settings),
:mod:`.request` (word ranges and an edited text, checked against the transcript at POST), :mod:`.audio`
(the speech audio's envelope, silent runs, voicing, quiet points and zero crossings), :mod:`.fillers`
(filler words in the transcript, and filler sounds no word covers), :mod:`.removals` (what to cut, with
its reason, cut in pauses), :mod:`.frames` (cuts on frame boundaries, kept ranges, crossfades),
:mod:`.source` (the asset or the clip version's timeline to tighten), :mod:`.plan` (the operator that
ties them together) and :mod:`.build` (the new clip version's timeline and the job's outputs).
"""
