"""Median Recommend latency over loopback: one client, one call in flight, a real server.

Trains the default model on MovieLens 100K from the data home (MFREC_DATA_HOME), starts
`mfrec serve` on a free loopback port, warms it up, then times sequential Recommend calls for
every user in turn and prints the median and p99 in microseconds (client and server both
Python, so this is the whole round trip a caller sees, not the server's compute alone).
Usage: .venv/bin/python bench/latency.py [--calls 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from mfrec.client import RecommenderClient
from mfrec.server.launch import free_port, serve_command, wait_serving
from mfrec.training.config import TrainingConfig
from mfrec.training.datasets import fetch_movielens
from mfrec.training.loaders import load_ratings
from mfrec.training.pipeline import train_and_save

_WARM_UP_CALLS = 300


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    dataset = fetch_movielens("ml-100k", download_if_missing=False)
    frame = load_ratings(dataset.ratings_path, dataset.format)
    users = sorted(set(frame["user_id"]), key=int)
    with tempfile.TemporaryDirectory() as scratch:
        train_and_save(frame, TrainingConfig(validation_fraction=0.0), Path(scratch))
        port = free_port()
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
        server = subprocess.Popen(serve_command(scratch, port), env=env, stderr=subprocess.DEVNULL)
        try:
            wait_serving(f"127.0.0.1:{port}", server)
            with RecommenderClient(f"127.0.0.1:{port}") as client:
                for call in range(_WARM_UP_CALLS):
                    client.recommend(users[call % len(users)])
                seconds = []
                for call in range(args.calls):
                    started = time.perf_counter()
                    client.recommend(users[call % len(users)], k=10)
                    seconds.append(time.perf_counter() - started)
        finally:
            server.terminate()
            server.wait(timeout=30)
    seconds.sort()
    result = {
        "calls": len(seconds),
        "median_us": round(statistics.median(seconds) * 1e6),
        "p99_us": round(seconds[int(0.99 * (len(seconds) - 1))] * 1e6),
    }
    print(
        f"Recommend over loopback, {result['calls']} sequential calls: median "
        f"{result['median_us']} µs, p99 {result['p99_us']} µs"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
