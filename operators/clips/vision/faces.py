"""Faces on sampled frames: OpenCV's Haar frontal-face cascade, shipped inside the wheel.

``opencv-python-headless<5`` carries the cascade files (5.x dropped them), so nothing is
downloaded. The main face of a shot is the one seen most, and largest, across its sampled
frames: detections are grouped by where they are, and the group with the most face area in
total wins, provided it was seen in enough of the samples (a one-off detection in a busy
background is not a face to follow).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from operators.errors import OperatorError

__all__ = ["Face", "detect_faces", "main_face"]

Box = tuple[float, float, float, float]  # x, y, width, height in fractions of the picture


@dataclass(frozen=True, slots=True)
class Face:
    """A shot's main face: its boxes across the samples it was found in (picture fractions)."""

    boxes: tuple[Box, ...]

    @property
    def centre(self) -> tuple[float, float]:
        return (float(np.median([b[0] + b[2] / 2 for b in self.boxes])),
                float(np.median([b[1] + b[3] / 2 for b in self.boxes])))

    @property
    def extent(self) -> Box:
        """The box around every sighting."""
        x0 = min(b[0] for b in self.boxes)
        y0 = min(b[1] for b in self.boxes)
        x1 = max(b[0] + b[2] for b in self.boxes)
        y1 = max(b[1] + b[3] for b in self.boxes)
        return x0, y0, x1 - x0, y1 - y0


@functools.lru_cache(maxsize=1)
def _cascade():  # -> cv2.CascadeClassifier
    import cv2

    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise OperatorError(f"OpenCV's face cascade {path} could not be loaded (opencv-python-headless<5 ships it)")
    return cascade


def detect_faces(gray: np.ndarray, min_face: float = 0.06) -> list[Box]:
    """Frontal faces in a grey picture, as fractions; ``min_face``: smallest side, of the height."""
    h, w = gray.shape[:2]
    side = max(20, int(round(min_face * h)))
    found = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
    boxes = [(float(x) / w, float(y) / h, float(bw) / w, float(bh) / h) for x, y, bw, bh in found]
    return sorted(boxes, key=lambda b: (b[0], b[1]))


def main_face(samples: Sequence[Sequence[Box]], min_share: float = 0.3) -> Face | None:
    """The face seen most (by total area) across ``samples`` (each a list of boxes), or None."""
    groups: list[list[Box]] = []
    for boxes in samples:
        for box in boxes:
            cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
            for group in groups:
                gx = float(np.mean([b[0] + b[2] / 2 for b in group]))
                gy = float(np.mean([b[1] + b[3] / 2 for b in group]))
                if abs(cx - gx) < max(0.08, box[2]) and abs(cy - gy) < max(0.08, box[3]):
                    group.append(box)
                    break
            else:
                groups.append([box])
    needed = max(1, math.ceil(min_share * len(samples)))
    groups = [g for g in groups if len(g) >= needed]
    if not groups:
        return None
    best = max(groups, key=lambda g: (sum(b[2] * b[3] for b in g), -g[0][0]))
    return Face(boxes=tuple(best))
