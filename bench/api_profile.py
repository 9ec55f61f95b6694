"""Where one ``GET /jobs/{id}`` spends its time: the real app and the bare baseline, called in-process.

``python bench/api_profile.py [--requests 3000]``. Both apps are called as ASGI applications by this
process (no HTTP, no client), against a real redis-server (the embedded one, in a temp folder), so what
is measured is the server's own work per request: Litestar, the app's code, redis-py and the Redis round
trip. First the time per request of each (best of 6 interleaved rounds), then a cProfile of the real app's
requests, its time grouped by layer, and the functions that cost most. Output: bench/out/api_profile.json.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bare_app import build as build_bare  # noqa: E402
from common import write_json  # noqa: E402

LAYERS = (  # (label, substring of the code's file name), first match wins
    ("socket send (the syscall)", "method 'send'"),
    ("epoll (waiting for Redis)", "method 'poll'"),
    ("redis-py (command packing, reply parsing, connection pool)", "/redis/"),
    ("Litestar (routing, kwargs/DI, response)", "/litestar/"),
    ("msgspec (JSON, kwargs conversion)", "msgspec"),
    ("app: auth middleware", "/server/auth.py"),
    ("app: handlers", "/server/"),
    ("app: store (Lua read, record assembly)", "/scheduler/"),
    ("asyncio event loop", "/asyncio/"),
)


async def _call(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> int:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1"), *headers], "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80), "state": {}}
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def _layer(key: tuple[str, int, str]) -> str:
    text = f"{key[0]}:{key[2]}"
    for label, needle in LAYERS:
        if needle in text:
            return label
    return "other (builtins such as isinstance and len, this harness)"


async def run(requests: int) -> dict[str, Any]:
    from scheduler.admission.graphs import GraphCatalog
    from scheduler.wiring.redis_server import EmbeddedRedis
    from scheduler.wiring.runtime import Runtime
    from scheduler.settings import Settings
    from server.app import create_app

    tmp = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    redis_server = EmbeddedRedis(tmp)
    url = redis_server.start()
    results: dict[str, Any] = {"requests": requests}
    try:
        out: dict[str, Any] = {}
        for label, tokens in (("app (auth off)", None), ("app (auth on)", "bench-token")):
            settings = Settings(redis_url=url, data_dir=tmp, run_dispatcher=False, run_webhooks=False,
                                api_tokens=tokens)
            app = create_app(settings)
            runtime = Runtime(settings=settings, catalog=GraphCatalog.load(settings.graphs_dir))
            runtime.open_redis()
            app.state.runtime = runtime
            out[label] = (app, [(b"authorization", b"Bearer bench-token")] if tokens else [])
        runtime = out["app (auth off)"][0].state.runtime
        record = await runtime.store.create("ingest", {"project_id": "p", "source_uri": "clip.mp4", "transcript": False})
        await runtime.store.report(record["id"], messages=["Probed", "Transcoding chunk 1/7"])
        job_id = record["id"]
        body = json.dumps(await runtime.store.get(job_id), separators=(",", ":")).encode()
        await runtime.redis.set(f"bare:job:{job_id}", body)
        out["bare Litestar + redis GET"] = (build_bare(url), [])
        path = f"/jobs/{job_id}"

        best: dict[str, float] = {}
        for _ in range(6):
            for label, (app, headers) in out.items():
                for _ in range(100):
                    assert await _call(app, path, headers) == 200, label
                t0 = time.perf_counter()
                for _ in range(requests // 2):
                    await _call(app, path, headers)
                best[label] = min(best.get(label, 1e9), (time.perf_counter() - t0) / (requests // 2) * 1e6)
        bare = best["bare Litestar + redis GET"]
        results["us_per_request"] = {k: round(v, 1) for k, v in best.items()}
        results["ratio_to_bare"] = {k: round(bare / v, 3) for k, v in best.items()}

        app, headers = out["app (auth on)"]
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(requests):
            await _call(app, path, headers)
        profile.disable()
        stats = pstats.Stats(profile)
        total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
        layers: dict[str, float] = {}
        for key, row in stats.stats.items():  # type: ignore[attr-defined]
            layers[_layer(key)] = layers.get(_layer(key), 0.0) + row[2]
        results["profiled_layers_pct"] = {k: round(v / total * 100, 1)
                                          for k, v in sorted(layers.items(), key=lambda kv: -kv[1])}
        top = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:15]  # type: ignore[attr-defined]
        results["top_functions"] = [
            {"function": f"{Path(k[0]).name}:{k[1]}({k[2]})", "pct_self": round(v[2] / total * 100, 1)}
            for k, v in top]
        await runtime.redis.aclose()
    finally:
        redis_server.stop()
    return results


def report(results: dict[str, Any]) -> None:
    print("\nGET /jobs/{id} in-process (ASGI, no HTTP), best of 6 rounds:")
    for label, us in results["us_per_request"].items():
        print(f"  {label:30s} {us:7.1f} us/request   {results['ratio_to_bare'][label]:.2f}x the bare app's rate")
    print("\nwhere the real app's time goes (cProfile, auth on, self time by layer):")
    for label, pct in results["profiled_layers_pct"].items():
        print(f"  {pct:5.1f} %  {label}")
    print("\ncostliest functions (self time):")
    for row in results["top_functions"]:
        print(f"  {row['pct_self']:5.1f} %  {row['function']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    results = asyncio.run(run(args.requests))
    report(results)
    print(f"\nresults in {write_json('api_profile.json', {'benchmark': 'api_profile', **results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
