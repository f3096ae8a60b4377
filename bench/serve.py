"""Serving benchmark: the real server on a loopback port, driven by a separate load generator.

Everything is measured in the same run, against the same server, and reported as ratios
(medians where repeated): this machine is shared, so absolute figures move from run to run.

    .venv/bin/python bench/serve.py            # full: a few minutes
    .venv/bin/python bench/serve.py --quick    # under a minute

For each catalog (MovieLens 100K from the data home; synthetic models of 100,000 and 1,000,000
items at 64 factors, written straight from synthetic factors) it reports requests/s, p50 and
p99 of a no-op RPC (health Check) and of Recommend, the server's own CPU microseconds per
request (utime + stime of the server processes from /proc/PID/stat, so the load generator's
share does not count), and the in-process CPU of the core's recommend call. Also: a
RecommendBatch of 1,000 users against the same users one Recommend at a time; RSS and PSS
(/proc/PID/smaps_rollup) of one worker and of two (supervisor included) serving the
1,000,000-item model; single-request time against the memory-bandwidth bound; per-thread
buffers against fresh ones; the approximate item index of the 100,000-item model (recall@10
against exact search over 200 users, and the median in-process CPU per request of exact over
index search); and training times (mfrec explicit ALS against Surprise SVD and
implicit's ALS when a benchmark interpreter has them, else null; 10 million synthetic
ratings in full mode only).

The last line printed is one JSON object of the headline ratios. bench/results/serve.json
and bench/results/serve.md (git-ignored) get everything.

Peers are never mfrec dependencies: `make bench` runs this from .bench-venv, which has
scikit-surprise and implicit; elsewhere MFREC_BENCH_PYTHON (or .bench-venv/bin/python) names
an interpreter that has them.
"""

from __future__ import annotations

import os

# One BLAS thread, before numpy loads, in this process and (by inheritance) the servers: the
# in-process figures then compare with a server worker's (see WORKER_ENVIRONMENT).
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _models import movielens_model_dir, synthetic_model_dir  # noqa: E402

from mfrec.server import ranking, recommender  # noqa: E402
from mfrec.server.launch import serve_command  # noqa: E402
from mfrec.server.model import ServingModel  # noqa: E402
from mfrec.server.recommender import Limits, RecommendQuery, recommend  # noqa: E402
from mfrec.training.artifact import list_versions  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
LOAD = HERE / "_load.py"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MiB = 1024 * 1024
STARTUP_SECONDS = 120.0
BATCH_USERS = 1000
ANN_USERS = 200
# The 1,000,000-item model gets no HNSW index: its build takes about ten times the 100,000-item
# one (about 30 s here at one thread), well past the two minutes this benchmark allows it.
ANN_1M_NOTE = "not built: an HNSW build of 1,000,000 items takes over 2 minutes here"
SPLIT_SEED = 42


# Processes: the server's tree, its CPU time and memory.


def process_tree(root: int) -> list[int]:
    """Returns root and every descendant process id."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = [root], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        tree.extend(children)
        frontier = children
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (fields 14 and 15 of /proc/PID/stat)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def memory_mib(pids: list[int]) -> dict[str, float]:
    """Summed Rss and Pss of the processes, from /proc/PID/smaps_rollup."""
    totals = {"rss_mib": 0.0, "pss_mib": 0.0}
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                totals[f"{key.lower()}_mib"] += int(rest.split()[0]) / 1024
    return {key: round(value, 1) for key, value in totals.items()}


@contextmanager
def running_server(model_dir: Path, workers: int = 1) -> Iterator[dict[str, Any]]:
    """Starts `mfrec serve` on a free loopback port and stops it with SIGTERM."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    if workers == 1:
        holder.close()  # one process binds without SO_REUSEPORT
    log = tempfile.NamedTemporaryFile(prefix="mfrec-bench-", suffix=".log", delete=False)
    command = serve_command(model_dir, port, "--workers", str(workers), "--grace-seconds", "2")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    _LOGS[process.pid] = log.name
    target = f"127.0.0.1:{port}"
    try:
        _wait_serving(target, process, workers)
        holder.close()
        yield {"pid": process.pid, "target": target, "port": port}
    finally:
        holder.close()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
        os.unlink(log.name)


def _wait_serving(target: str, process: subprocess.Popen[bytes], workers: int) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            with open(_log_name(process)) as text:
                tail = text.read()[-2000:]
            raise RuntimeError(f"the server exited with {process.returncode}:\n{tail}")
        listening = _listening_processes(int(target.rsplit(":", 1)[1]), process.pid)
        if len(listening) >= workers:
            options = [("grpc.use_local_subchannel_pool", 1)]
            with grpc.insecure_channel(target, options=options) as channel:
                try:
                    answer = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=2.0
                    )
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
        time.sleep(0.1)
    raise RuntimeError("the server did not start serving in time")


_LOGS: dict[int, str] = {}


def _log_name(process: subprocess.Popen[bytes]) -> str:
    return _LOGS[process.pid]


def _socket_inodes(port: int, state: str) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                inodes.add(fields[9])
    return inodes


def _owners(port: int, root: int, state: str) -> set[int]:
    inodes = _socket_inodes(port, state)
    owners = set()
    for pid in process_tree(root):
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if any(link[8:-1] in inodes for link in links if link.startswith("socket:[")):
            owners.add(pid)
    return owners


def _listening_processes(port: int, root: int) -> set[int]:
    return _owners(port, root, "0A")  # 0A: LISTEN


# The load generator.


def _load_command(mode: str, server: dict[str, Any], users: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(LOAD),
        mode,
        "--target",
        server["target"],
        "--users",
        str(users),
        *extra,
    ]


def rate(server: dict[str, Any], users: Path, method: str, seconds: float) -> dict[str, Any]:
    """Runs one load window and adds the server's CPU microseconds per request."""
    command = _load_command("rate", server, users, "--method", method, "--seconds", str(seconds))
    load = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert load.stdin is not None and load.stdout is not None
    if load.stdout.readline().strip() != "ready":
        raise RuntimeError("the load generator did not start")
    pids = process_tree(server["pid"])
    before = cpu_seconds(pids)
    load.stdin.write("go\n")
    load.stdin.flush()
    result: dict[str, Any] = json.loads(load.stdout.readline())
    after = cpu_seconds(pids)
    load.wait(timeout=30)
    result["server_cpu_us_per_request"] = 1e6 * (after - before) / max(result["requests"], 1)
    return _rounded(result)


def batch_against_sequential(server: dict[str, Any], users: Path, repeats: int) -> dict[str, Any]:
    command = _load_command("batch", server, users, "--repeats", str(repeats))
    output = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    result: dict[str, Any] = json.loads(output.stdout.splitlines()[-1])
    result["batch_speedup"] = result["sequential_seconds"] / result["batch_seconds"]
    return _rounded(result)


def touch_every_worker(server: dict[str, Any], users: Path, workers: int) -> int:
    """Sends requests over enough connections that every worker answers some."""
    channels = 4 * workers
    answered: set[int] = set()
    for _ in range(4):
        command = _load_command("touch", server, users, "--channels", str(channels))
        load = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert load.stdin is not None and load.stdout is not None
        load.stdout.readline()
        answered |= _owners(server["port"], server["pid"], "01")  # 01: ESTABLISHED
        load.stdin.write("\n")
        load.stdin.flush()
        load.wait(timeout=60)
        if len(answered) >= workers:
            break
        channels *= 2
    return len(answered)


# In-process measurements.


def load_model(model_dir: Path) -> ServingModel:
    return ServingModel.load(model_dir / list_versions(model_dir)[-1])


def known_users(model: ServingModel, count: int) -> list[str]:
    """count known user ids spread over the model (ML-100K's 943 repeat from the start)."""
    n_users = len(model.artifact.user_ids)
    step = max(1, n_users // count)
    return model.artifact.user_ids.ids_at([(i * step) % n_users for i in range(count)])


def core_recommend(model: ServingModel, users: list[str], calls: int) -> dict[str, float]:
    """Median CPU and wall microseconds of the core's recommend call, one thread."""
    limits = Limits()
    queries = [RecommendQuery(user, k=10) for user in users]
    for query in queries[: min(20, calls)]:
        recommend(model, query, limits)
    cpu, wall = [], []
    for position in range(calls):
        query = queries[position % len(queries)]
        began_cpu, began_wall = time.process_time(), time.perf_counter()
        recommend(model, query, limits)
        cpu.append(time.process_time() - began_cpu)
        wall.append(time.perf_counter() - began_wall)
    # process_time ticks coarsely on some kernels: the mean of many calls is the estimate.
    return {
        "cpu_us": round(1e6 * statistics.fmean(cpu), 1),
        "wall_us_p50": round(1e6 * statistics.median(wall), 1),
    }


def read_bandwidth(size_mib: int, repeats: int = 5) -> float:
    """Bytes per second np.sum reads from a float32 array larger than the caches."""
    array = np.ones(size_mib * MiB // 4, dtype=np.float32)
    array.sum()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        array.sum()
        times.append(time.perf_counter() - began)
    return array.nbytes / statistics.median(times)


def fresh_buffers_ratio(model: ServingModel, users: list[str], calls: int) -> dict[str, float]:
    """Recommend with this thread's reused buffers against buffers allocated per request."""
    reused = core_recommend(model, users, calls)
    original = ranking.work_buffers

    def fresh(rows: int, size: int) -> Any:
        return tuple(
            np.empty((rows, size), dtype=dtype) for dtype in (np.float32, np.float32, np.bool_)
        )

    recommender.work_buffers = fresh  # type: ignore[assignment]
    try:
        allocated = core_recommend(model, users, calls)
    finally:
        recommender.work_buffers = original
    return {
        "reused_wall_us_p50": reused["wall_us_p50"],
        "fresh_wall_us_p50": allocated["wall_us_p50"],
        "fresh_over_reused": round(allocated["wall_us_p50"] / reused["wall_us_p50"], 3),
    }


def ann_figures(exact: ServingModel, indexed: ServingModel, users: list[str]) -> dict[str, Any]:
    """Recall@10 of the index-backed answers against exact search, and the CPU speed-up."""
    limits = Limits()
    queries = [RecommendQuery(user, k=10) for user in users]
    for query in queries[:20]:
        recommend(exact, query, limits)
        recommend(indexed, query, limits)
    hits, exact_cpu, index_cpu = 0, [], []
    for query in queries:
        began = time.process_time()
        truth = recommend(exact, query, limits)
        exact_cpu.append(time.process_time() - began)
        began = time.process_time()
        found = recommend(indexed, query, limits)
        index_cpu.append(time.process_time() - began)
        hits += len({item for item, _ in truth.items} & {item for item, _ in found.items})
    exact_us, index_us = 1e6 * statistics.median(exact_cpu), 1e6 * statistics.median(index_cpu)
    return {
        "users": len(queries),
        "recall_at_10": round(hits / (10 * len(queries)), 4),
        "exact_cpu_us_p50": round(exact_us, 1),
        "index_cpu_us_p50": round(index_us, 1),
        "speedup": round(exact_us / max(index_us, 1e-3), 2),
        "ef_search": indexed.ef_search,
        "index_build_seconds": indexed.metadata.get("index_build_seconds"),
    }


# Training.


def fit_mfrec_ml100k(ratings_file: Path, repeats: int) -> dict[str, Any]:
    from mfrec.training.config import TrainingConfig
    from mfrec.training.interactions import index_ratings
    from mfrec.training.loaders import load_ratings
    from mfrec.training.models import fit_model
    from mfrec.training.pipeline import validation_rows

    data = index_ratings(load_ratings(ratings_file, "ml-100k"))
    config = TrainingConfig(validation_fraction=0.0).resolved()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fit_model(data, config)
        times.append(time.perf_counter() - began)
    kept, held = validation_rows(data.n_ratings, 0.1, SPLIT_SEED)
    factors = fit_model(data.subset(kept), config)
    part = data.subset(held)
    predicted = np.clip(factors.predict(part.user_index, part.item_index), 1.0, 5.0)
    rmse = float(np.sqrt(np.mean((predicted - part.values) ** 2)))
    return {
        "fit_seconds": round(statistics.median(times), 3),
        "heldout_rmse": round(rmse, 4),
        "config": config.to_dict(),
    }


PEER_SCRIPT = r"""
import json, sys, time
import numpy as np
path, held_path = sys.argv[1], sys.argv[2]
rows = np.loadtxt(path, dtype=np.int64)
held = np.load(held_path)
out = {"surprise_svd_fit_seconds": None, "implicit_als_fit_seconds": None}
try:
    import pandas as pd
    from surprise import SVD, Dataset, Reader
    frame = pd.DataFrame(rows[:, :3], columns=["u", "i", "r"])
    reader = Reader(rating_scale=(1, 5))
    trainset = Dataset.load_from_df(frame, reader).build_full_trainset()
    times = []
    for _ in range(3):
        began = time.perf_counter(); SVD().fit(trainset); times.append(time.perf_counter() - began)
    out["surprise_svd_fit_seconds"] = sorted(times)[1]
    mask = np.zeros(len(frame), dtype=bool); mask[held] = True
    model = SVD(random_state=0).fit(
        Dataset.load_from_df(frame[~mask], reader).build_full_trainset())
    test = frame[mask]
    predicted = np.array([model.predict(u, i).est for u, i in zip(test["u"], test["i"])])
    out["surprise_svd_heldout_rmse"] = float(np.sqrt(np.mean((predicted - test["r"]) ** 2)))
except ImportError:
    pass
try:
    import scipy.sparse as sp
    from implicit.als import AlternatingLeastSquares
    matrix = sp.csr_matrix((rows[:, 2].astype(np.float32), (rows[:, 0], rows[:, 1])))
    times = []
    for _ in range(3):
        model = AlternatingLeastSquares(random_state=42)
        began = time.perf_counter(); model.fit(matrix, show_progress=False)
        times.append(time.perf_counter() - began)
    out["implicit_als_fit_seconds"] = sorted(times)[1]
except ImportError:
    pass
print(json.dumps(out))
"""


def fit_peers(ratings_file: Path) -> dict[str, Any]:
    """Fit seconds of Surprise SVD and implicit ALS (defaults), or null when absent."""
    import importlib.util

    python = os.environ.get("MFREC_BENCH_PYTHON") or str(HERE.parent / ".bench-venv/bin/python")
    if importlib.util.find_spec("surprise") or importlib.util.find_spec("implicit"):
        python = sys.executable  # run from the benchmark environment (make bench)
    empty = {"surprise_svd_fit_seconds": None, "implicit_als_fit_seconds": None}
    if not Path(python).exists():
        return {**empty, "note": "no benchmark interpreter with the peers (MFREC_BENCH_PYTHON)"}
    from mfrec.training.pipeline import validation_rows

    n_rows = sum(1 for line in ratings_file.read_text().splitlines() if line.strip())
    held_file = Path(tempfile.mkdtemp(prefix="mfrec-bench-")) / "held.npy"
    # The same held-out rows as fit_mfrec_ml100k (the loader keeps the file's row order).
    np.save(held_file, validation_rows(n_rows, 0.1, SPLIT_SEED)[1])
    output = subprocess.run(
        [python, "-c", PEER_SCRIPT, str(ratings_file), str(held_file)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if output.returncode != 0:
        return {**empty, "note": output.stderr.strip().splitlines()[-1:]}
    result: dict[str, Any] = json.loads(output.stdout.splitlines()[-1])
    return _rounded(result)


SYNTHETIC_FIT_SCRIPT = r"""
import ctypes, json, sys, time
n_ratings, mallopt = int(sys.argv[1]), sys.argv[2] == "mallopt"
if mallopt:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD: blocks of 1 MiB and more are mapped
    libc.mallopt(-1, 1 << 20)  # M_TRIM_THRESHOLD: give freed heap back beyond 1 MiB
from mfrec.training.config import TrainingConfig
from mfrec.training.interactions import index_ratings
from mfrec.training.models import fit_model
from mfrec.training.synthetic import synthetic_ratings
n_users, n_items = max(1000, n_ratings // 140), max(500, n_ratings // 700)
frame = synthetic_ratings(n_users, n_items, n_ratings, seed=7)
data = index_ratings(frame)
del frame
began = time.perf_counter()
fit_model(data, TrainingConfig(validation_fraction=0.0).resolved())
seconds = time.perf_counter() - began
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"ratings": n_ratings, "users": n_users, "items": n_items,
                  "fit_seconds": round(seconds, 2), "peak_rss_mib": round(int(peak) / 1024, 1),
                  "mallopt": mallopt}))
"""


def fit_synthetic(n_ratings: int, mallopt: bool, timeout: float) -> dict[str, Any]:
    """Fits explicit ALS on synthetic ratings in a fresh process: seconds and peak RSS."""
    command = [
        sys.executable,
        "-c",
        SYNTHETIC_FIT_SCRIPT,
        str(n_ratings),
        "mallopt" if mallopt else "default",
    ]
    output = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if output.returncode != 0:
        return {"ratings": n_ratings, "error": output.stderr.strip().splitlines()[-1:]}
    result: dict[str, Any] = json.loads(output.stdout.splitlines()[-1])
    return result


# The run.


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()}


def _users_file(directory: Path, name: str, users: list[str]) -> Path:
    path = directory / f"{name}-users.txt"
    path.write_text("\n".join(users) + "\n")
    return path


def serving_figures(
    name: str,
    model_dir: Path,
    users: Path,
    seconds: float,
    rounds: int,
    batch_repeats: int | None,
) -> dict[str, Any]:
    """Alternates Check and Recommend windows; each figure is the median over the rounds.

    Alternating short windows keeps a burst of load from other processes on this machine
    from landing on one RPC's figures only.
    """
    with running_server(model_dir) as server:
        windows: dict[str, list[dict[str, Any]]] = {"check": [], "recommend": []}
        for _ in range(rounds):
            for method, results in windows.items():
                results.append(rate(server, users, method, seconds / rounds))
        figures: dict[str, Any] = {method: _medians(results) for method, results in windows.items()}
        if batch_repeats:
            figures["batch"] = batch_against_sequential(server, users, batch_repeats)
    print(f"  {name}: {json.dumps(figures)}", flush=True)
    return figures


def _medians(windows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("requests_per_second", "p50_ms", "p99_ms", "server_cpu_us_per_request")
    medians = {key: statistics.median(w[key] for w in windows) for key in keys}
    medians["requests"] = sum(w["requests"] for w in windows)
    medians["errors"] = sum(w["errors"] for w in windows)
    medians["windows"] = len(windows)
    return _rounded(medians)


def memory_figures(model_dir: Path, users: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for workers in (1, 2):
        with running_server(model_dir, workers) as server:
            answered = touch_every_worker(server, users, workers)
            time.sleep(0.5)
            pids = process_tree(server["pid"])
            figures[f"workers_{workers}"] = {
                **memory_mib(pids),
                "processes": len(pids),
                "workers_answered": answered,
            }
    figures["pss_ratio_two_workers"] = round(
        figures["workers_2"]["pss_mib"] / figures["workers_1"]["pss_mib"], 3
    )
    figures["rss_ratio_two_workers"] = round(
        figures["workers_2"]["rss_mib"] / figures["workers_1"]["rss_mib"], 3
    )
    print(f"  memory (1,000,000 items): {json.dumps(figures)}", flush=True)
    return figures


def run(quick: bool) -> dict[str, Any]:
    from mfrec.server.allocator import tune_malloc
    from mfrec.training.datasets import get_data_home

    tune_malloc()  # as every server process does, so fresh buffers cost what they would there
    started = time.perf_counter()
    # Seconds of load per RPC and catalog, split into alternating rounds of windows.
    seconds, rounds = (2.4, 3) if quick else (10.0, 5)
    ratings_file = get_data_home() / "ml-100k" / "u.data"
    work = Path(tempfile.mkdtemp(prefix="mfrec-bench-"))
    catalogs = {
        "ml100k": movielens_model_dir(ratings_file),
        "100k": synthetic_model_dir(100_000, 100_000),
        "1m": synthetic_model_dir(100_000, 1_000_000),
    }
    indexed_100k = synthetic_model_dir(100_000, 100_000, index="hnsw")
    results: dict[str, Any] = {"mode": "quick" if quick else "full", "machine": _machine()}
    print(f"models ready in {time.perf_counter() - started:.1f} s", flush=True)

    users: dict[str, Path] = {}
    core: dict[str, Any] = {}
    for name in ("ml100k", "100k"):
        model = load_model(catalogs[name])
        chosen = known_users(model, BATCH_USERS)
        users[name] = _users_file(work, name, chosen)
        core[name] = core_recommend(model, chosen, 2000 if name == "ml100k" else 200)
        if name == "100k":
            indexed = load_model(indexed_100k)
            results["ann"] = {
                "100k": ann_figures(model, indexed, known_users(model, ANN_USERS)),
                "1m": {"note": ANN_1M_NOTE},
            }
            print(f"  approximate index (100,000 items): {json.dumps(results['ann'])}", flush=True)
            del indexed
        del model
    # The 1,000,000-item model's memory goes first, while no other process maps it.
    one_million = load_model(catalogs["1m"])
    users["1m"] = _users_file(work, "1m", known_users(one_million, 200))
    del one_million
    results["memory"] = memory_figures(catalogs["1m"], users["1m"])

    serving = {
        "ml100k": serving_figures(
            "ML-100K", catalogs["ml100k"], users["ml100k"], seconds, rounds, 3 if quick else 5
        ),
        "100k": serving_figures(
            "100,000 items", catalogs["100k"], users["100k"], seconds, rounds, None
        ),
    }
    if not quick:
        serving["1m"] = serving_figures(
            "1,000,000 items", catalogs["1m"], users["1m"], seconds, rounds, None
        )
    results["serving"] = serving

    one_million = load_model(catalogs["1m"])
    chosen = known_users(one_million, 200)
    core["1m"] = core_recommend(one_million, chosen, 10 if quick else 40)
    results["core_recommend"] = core
    bandwidth = read_bandwidth(256 if quick else 1024)
    item_bytes = one_million.artifact.factors.item_factors.nbytes
    bound_us = 1e6 * item_bytes / bandwidth
    results["bandwidth"] = {
        "read_gib_per_second": round(bandwidth / 2**30, 2),
        "item_matrix_mib": round(item_bytes / MiB, 1),
        "bound_us": round(bound_us, 1),
        "single_request_wall_us_p50": core["1m"]["wall_us_p50"],
        "ratio_to_bound": round(core["1m"]["wall_us_p50"] / bound_us, 3),
    }
    results["buffers_1m"] = fresh_buffers_ratio(one_million, chosen, 10 if quick else 30)
    del one_million

    training: dict[str, Any] = {"ml100k_mfrec": fit_mfrec_ml100k(ratings_file, 1 if quick else 3)}
    if not quick:
        training["ml100k_peers"] = fit_peers(ratings_file)
        training["synthetic_2m_default"] = fit_synthetic(2_000_000, False, 900)
        training["synthetic_2m_mallopt"] = fit_synthetic(2_000_000, True, 900)
        training["synthetic_10m"] = fit_synthetic(10_000_000, False, 1500)
    results["training"] = training
    results["ratios"] = headline(results)
    results["seconds"] = round(time.perf_counter() - started, 1)
    return results


def headline(results: dict[str, Any]) -> dict[str, Any]:
    serving, core = results["serving"], results["core_recommend"]
    ml, big = serving["ml100k"], serving["100k"]

    def per(figures: dict[str, Any], method: str) -> float:
        value: float = figures[method]["server_cpu_us_per_request"]
        return value

    peers = results["training"].get("ml100k_peers", {})
    surprise = peers.get("surprise_svd_fit_seconds")
    mfrec_fit = results["training"]["ml100k_mfrec"]["fit_seconds"]
    return _rounded(
        {
            "cpu_ratio_ml100k": per(ml, "recommend") / per(ml, "check"),
            "cpu_overhead_ratio_100k": per(big, "recommend")
            / (per(big, "check") + core["100k"]["cpu_us"]),
            "cpu_overhead_ratio_ml100k": per(ml, "recommend")
            / (per(ml, "check") + core["ml100k"]["cpu_us"]),
            "qps_ratio_ml100k": ml["recommend"]["requests_per_second"]
            / ml["check"]["requests_per_second"],
            "pss_ratio_two_workers": results["memory"]["pss_ratio_two_workers"],
            "batch_speedup": ml["batch"]["batch_speedup"],
            "bandwidth_ratio_1m": results["bandwidth"]["ratio_to_bound"],
            "fit_ratio_vs_surprise": mfrec_fit / surprise if surprise else None,
            "ann_recall_at_10_100k": results["ann"]["100k"]["recall_at_10"],
            "ann_speedup_100k": results["ann"]["100k"]["speedup"],
        }
    )


TARGETS = {
    "cpu_ratio_ml100k": ("<=", 1.25),
    "cpu_overhead_ratio_100k": ("<=", 1.25),
    "qps_ratio_ml100k": (">=", 0.8),
    "pss_ratio_two_workers": ("<=", 1.3),
    "batch_speedup": (">=", 20.0),
    "bandwidth_ratio_1m": ("<=", 2.0),
    "fit_ratio_vs_surprise": ("<=", 1.0),
    "ann_recall_at_10_100k": (">=", 0.9),
    "ann_speedup_100k": (">=", 1.0),
}


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# Serving benchmark ({results['mode']}, {results['seconds']} s)",
        "",
        "| catalog | RPC | requests/s | p50 ms | p99 ms | server CPU µs/request |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    names = {"ml100k": "ML-100K (1,682 items)", "100k": "100,000 items", "1m": "1,000,000 items"}
    for key, figures in results["serving"].items():
        for method in ("check", "recommend"):
            f = figures[method]
            lines.append(
                f"| {names[key]} | {method} | {f['requests_per_second']:.0f} | "
                f"{f['p50_ms']:.2f} | {f['p99_ms']:.2f} | "
                f"{f['server_cpu_us_per_request']:.0f} |"
            )
    lines += ["", "| catalog | core recommend CPU µs | wall µs (p50) |", "| --- | ---: | ---: |"]
    for key, figures in results["core_recommend"].items():
        lines.append(f"| {names[key]} | {figures['cpu_us']:.0f} | {figures['wall_us_p50']:.0f} |")
    lines += [
        "",
        "| approximate index | users | recall@10 | exact CPU µs | index CPU µs | speed-up "
        "| build s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, figures in results["ann"].items():
        if "note" in figures:
            lines.append(f"| {names[key]} | {figures['note']} | | | | | |")
            continue
        lines.append(
            f"| {names[key]} (HNSW, ef_search {figures['ef_search']}) | {figures['users']} | "
            f"{figures['recall_at_10']:.3f} | {figures['exact_cpu_us_p50']:.0f} | "
            f"{figures['index_cpu_us_p50']:.0f} | {figures['speedup']:.2f} | "
            f"{figures['index_build_seconds']} |"
        )
    memory = results["memory"]
    lines += [
        "",
        "| 1,000,000 items | RSS MiB | PSS MiB | processes |",
        "| --- | ---: | ---: | ---: |",
    ]
    for workers in (1, 2):
        m = memory[f"workers_{workers}"]
        lines.append(
            f"| {workers} worker(s) | {m['rss_mib']:.0f} | {m['pss_mib']:.0f} | {m['processes']} |"
        )
    batch = results["serving"]["ml100k"]["batch"]
    lines += [
        "",
        f"RecommendBatch of {batch['users']} users: {batch['batch_seconds'] * 1e3:.0f} ms; "
        f"one Recommend at a time: {batch['sequential_seconds'] * 1e3:.0f} ms "
        f"(same answers: {batch['batch_equals_sequential']}).",
        "",
    ]
    bw = results["bandwidth"]
    lines.append(
        f"1,000,000 items, one request: {bw['single_request_wall_us_p50'] / 1e3:.1f} ms; "
        f"bandwidth bound {bw['bound_us'] / 1e3:.1f} ms ({bw['item_matrix_mib']:.0f} MiB "
        f"at {bw['read_gib_per_second']} GiB/s)."
    )
    buffers = results["buffers_1m"]
    lines.append(
        f"Per-thread buffers: {buffers['reused_wall_us_p50'] / 1e3:.1f} ms per request; "
        f"fresh buffers: {buffers['fresh_wall_us_p50'] / 1e3:.1f} ms."
    )
    lines += ["", "| training | seconds | peak RSS MiB |", "| --- | ---: | ---: |"]
    training = results["training"]
    own = training["ml100k_mfrec"]
    lines.append(
        f"| ML-100K, mfrec explicit ALS (defaults; held-out RMSE {own['heldout_rmse']}) | "
        f"{own['fit_seconds']} | |"
    )
    peers = training.get("ml100k_peers", {})
    for key, label in (
        ("surprise_svd_fit_seconds", "Surprise SVD (defaults)"),
        ("implicit_als_fit_seconds", "implicit ALS (defaults)"),
    ):
        if key in peers:
            if key.startswith("surprise") and peers.get("surprise_svd_heldout_rmse"):
                label += f"; held-out RMSE {peers['surprise_svd_heldout_rmse']:.4f}"
            lines.append(f"| ML-100K, {label} | {peers[key]} | |")
    for key in ("synthetic_2m_default", "synthetic_2m_mallopt", "synthetic_10m"):
        if key in training:
            t = training[key]
            label = f"{t.get('ratings', 0):,} synthetic ratings" + (
                " (mallopt)" if t.get("mallopt") else ""
            )
            lines.append(f"| {label} | {t.get('fit_seconds')} | {t.get('peak_rss_mib')} |")
    lines += ["", "| ratio | measured | target | met |", "| --- | ---: | ---: | --- |"]
    for key, value in results["ratios"].items():
        if key in TARGETS:
            op, bound = TARGETS[key]
            met = None if value is None else (value <= bound if op == "<=" else value >= bound)
            shown = "null" if value is None else f"{value:.3f}"
            lines.append(
                f"| {key} | {shown} | {op} {bound} | "
                f"{'n/a' if met is None else 'yes' if met else 'no'} |"
            )
    return "\n".join(lines) + "\n"


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "load_average": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short windows, under a minute")
    args = parser.parse_args()
    results = run(args.quick)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (RESULTS / "serve.md").write_text(table)
    print(table)
    print(json.dumps(results["ratios"]))


if __name__ == "__main__":
    main()
