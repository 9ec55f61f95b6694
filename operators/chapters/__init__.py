"""Chapters of a talk: topic boundaries from sentence embeddings, titles, YouTube text and WebVTT."""
