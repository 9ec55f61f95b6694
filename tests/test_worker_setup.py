"""What ``--preload operators`` does to a Dask worker: allocator settings and a warm speech model."""

from __future__ import annotations

import time

from distributed import Client, LocalCluster


def _models_loaded() -> int:
    from operators.speech.whisper import _load_model

    return _load_model.cache_info().currsize


def _page_faults_of_a_reused_buffer() -> int:
    """Minor page faults while a 4 MiB buffer is allocated, written and freed 20 times (after a first time)."""
    import ctypes
    import resource

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]

    def once() -> None:
        block = libc.malloc(4 << 20)
        ctypes.memset(block, 1, 4 << 20)
        libc.free(block)

    once()
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(20):
        once()
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before


def test_a_worker_reuses_freed_memory_and_loads_the_speech_model_when_it_starts():
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      preload=["operators"], env={"AVE_CORES_PER_TASK": "1"}) as cluster, Client(cluster) as client:
        # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536: a freed buffer goes back to the OS at once
        # and its pages fault in again on the next allocation (2x the CPU of a Whisper window). After the
        # preload, buffers up to 32 MiB are reused (a fault or two, against 20 x 1024 pages).
        faults = client.run(_page_faults_of_a_reused_buffer)
        assert all(n < 200 for n in faults.values()), faults
        # tiny.en loads in the background: the first job does not pay for it (no task ever asked for it).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(client.run(_models_loaded).values()):
            time.sleep(0.2)
        assert all(client.run(_models_loaded).values())
