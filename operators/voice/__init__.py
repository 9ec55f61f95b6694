"""Voice enhancement: DeepFilterNet3 noise reduction, on chunks in parallel, joined with crossfades."""
