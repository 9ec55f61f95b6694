"""moov_first walks MP4 boxes by their sizes: a damaged size must end the walk, never loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from operators.media.join import moov_first


def _box(kind: bytes, payload: bytes = b"", size: int | None = None) -> bytes:
    return (len(payload) + 8 if size is None else size).to_bytes(4, "big") + kind + payload


@pytest.mark.timeout(5)
@pytest.mark.parametrize("size", [0, 4, 7])
def test_a_box_claiming_under_8_bytes_ends_the_walk(tmp_path: Path, size: int) -> None:
    path = tmp_path / "crafted.mp4"
    path.write_bytes(_box(b"ftyp", b"isom") + _box(b"free", b"\0" * 16, size=size) + _box(b"moov"))
    assert moov_first(path) is False


def test_moov_before_mdat_after_other_boxes(tmp_path: Path) -> None:
    path = tmp_path / "ok.mp4"
    path.write_bytes(_box(b"ftyp", b"isom") + _box(b"free", b"\0" * 5) + _box(b"moov") + _box(b"mdat", b"x"))
    assert moov_first(path) is True
    path.write_bytes(_box(b"ftyp", b"isom") + _box(b"mdat", b"x") + _box(b"moov"))
    assert moov_first(path) is False
