"""Load generator of bench/serve.py, run as its own process so its CPU is not the server's.

    python bench/_load.py rate --target HOST:PORT --method check|recommend --users FILE
        Warms up, prints "ready", waits for a line on stdin, then keeps --in-flight requests
        outstanding over --channels connections for --seconds, and prints one JSON line:
        requests, errors, seconds, requests_per_second, p50_ms, p99_ms.
    python bench/_load.py batch --target HOST:PORT --users FILE --repeats R
        Times R rounds of (the users one Recommend at a time, then one RecommendBatch of
        them all), checks both answer the same, and prints one JSON line of the times.
    python bench/_load.py touch --target HOST:PORT --users FILE --channels N
        Sends a few requests on each of N connections, prints "done", waits for a line on
        stdin (the caller looks at which workers hold the connections), then prints "{}".

Every run is bounded in time and count; only loopback targets are used by the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mfrec.v1 import recommender_pb2 as pb
from mfrec.v1 import recommender_pb2_grpc as pb_grpc

# Several channels are several connections only without the global subchannel pool.
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]
WARMUP_SECONDS = 0.5
TIMEOUT_SECONDS = 10.0


def _users(path: str) -> list[str]:
    return [line for line in Path(path).read_text().splitlines() if line]


def _caller(channel: grpc.aio.Channel, method: str, users: list[str]) -> Any:
    if method == "check":
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="")
        return lambda position: stub.Check(request, timeout=TIMEOUT_SECONDS)
    recommender = pb_grpc.RecommenderStub(channel)
    requests = [pb.RecommendRequest(user_id=user, k=10) for user in users]
    return lambda position: recommender.Recommend(
        requests[position % len(requests)], timeout=TIMEOUT_SECONDS
    )


async def _worker(
    call: Any, until: float, latencies: list[float], errors: list[int], start: int
) -> None:
    position = start
    while time.perf_counter() < until:
        began = time.perf_counter()
        try:
            await call(position)
        except grpc.RpcError:
            errors.append(1)
        else:
            latencies.append(time.perf_counter() - began)
        position += 1


async def _rate(args: argparse.Namespace) -> dict[str, Any]:
    users = _users(args.users)
    channels = [
        grpc.aio.insecure_channel(args.target, options=CHANNEL_OPTIONS)
        for _ in range(args.channels)
    ]
    calls = [_caller(channel, args.method, users) for channel in channels]

    async def window(seconds: float) -> tuple[list[float], list[int], float]:
        latencies: list[float] = []
        errors: list[int] = []
        began = time.perf_counter()
        until = began + seconds
        await asyncio.gather(
            *(
                _worker(calls[i % len(calls)], until, latencies, errors, i * 7919)
                for i in range(args.in_flight)
            )
        )
        return latencies, errors, time.perf_counter() - began

    await window(WARMUP_SECONDS)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    latencies, errors, elapsed = await window(args.seconds)
    for channel in channels:
        await channel.close()
    latencies.sort()
    count = len(latencies)
    return {
        "requests": count,
        "errors": len(errors),
        "seconds": elapsed,
        "requests_per_second": count / elapsed,
        "p50_ms": 1e3 * latencies[count // 2] if count else None,
        "p99_ms": 1e3 * latencies[min(count - 1, int(count * 0.99))] if count else None,
    }


def _batch(args: argparse.Namespace) -> dict[str, Any]:
    users = _users(args.users)
    requests = [pb.RecommendRequest(user_id=user, k=10) for user in users]
    options = [*CHANNEL_OPTIONS, ("grpc.max_receive_message_length", 64 << 20)]
    with grpc.insecure_channel(args.target, options=options) as channel:
        stub = pb_grpc.RecommenderStub(channel)
        batch_request = pb.RecommendBatchRequest(requests=requests)
        stub.RecommendBatch(batch_request, timeout=60.0)  # warm-up
        sequential, batched = [], []
        for _ in range(args.repeats):
            began = time.perf_counter()
            singles = [stub.Recommend(request, timeout=TIMEOUT_SECONDS) for request in requests]
            sequential.append(time.perf_counter() - began)
            began = time.perf_counter()
            answer = stub.RecommendBatch(batch_request, timeout=60.0)
            batched.append(time.perf_counter() - began)
        same = list(answer.responses) == singles
    return {
        "users": len(users),
        "sequential_seconds": statistics.median(sequential),
        "batch_seconds": statistics.median(batched),
        "batch_equals_sequential": same,
    }


def _touch(args: argparse.Namespace) -> dict[str, Any]:
    users = _users(args.users)
    channels = [
        grpc.insecure_channel(args.target, options=CHANNEL_OPTIONS) for _ in range(args.channels)
    ]
    for round_number in range(args.rounds):
        for position, channel in enumerate(channels):
            user = users[(round_number * len(channels) + position) % len(users)]
            pb_grpc.RecommenderStub(channel).Recommend(
                pb.RecommendRequest(user_id=user, k=10), timeout=60.0
            )
    # Connected until told: the caller sees which processes hold the connections.
    print("done", flush=True)
    sys.stdin.readline()
    for channel in channels:
        channel.close()
    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("rate", "batch", "touch"))
    parser.add_argument("--target", required=True)
    parser.add_argument("--users", required=True, help="file of user ids, one per line")
    parser.add_argument("--method", choices=("check", "recommend"), default="check")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.mode == "rate":
        result = asyncio.run(_rate(args))
    elif args.mode == "batch":
        result = _batch(args)
    else:
        result = _touch(args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
