"""Codec threads per task: asked-for, else the cores per task the cluster hands its workers."""

from __future__ import annotations

from operators.context import CORES_PER_TASK_ENV
from operators.media._av import codec_threads


def test_asked_for_threads_win(monkeypatch):
    monkeypatch.setenv(CORES_PER_TASK_ENV, "1")
    assert codec_threads(3) == 3


def test_the_clusters_share_of_cores_is_used(monkeypatch):
    monkeypatch.setenv(CORES_PER_TASK_ENV, "1")
    assert codec_threads(None) == 1
    monkeypatch.setenv(CORES_PER_TASK_ENV, "4")
    assert codec_threads(None) == 4


def test_without_a_cluster_setting_the_default_is_used(monkeypatch):
    monkeypatch.delenv(CORES_PER_TASK_ENV, raising=False)
    assert codec_threads(None) == 2
    monkeypatch.setenv(CORES_PER_TASK_ENV, "lots")
    assert codec_threads(None, default=3) == 3
    monkeypatch.setenv(CORES_PER_TASK_ENV, "0")
    assert codec_threads(None) == 1
