"""Caption style presets, brand defaults, safe areas, keywords and the scripts a font can draw."""
