"""The server process: builds the gRPC server with health and reflection, and runs it."""

from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mfrec.server.allocator import tune_malloc
from mfrec.server.auth import TokenAuthInterceptor, is_loopback, load_tokens, method_roles
from mfrec.server.drain import Drain
from mfrec.server.filejobs import FileJobs
from mfrec.server.jobs import TrainingJobs
from mfrec.server.recommender import Limits
from mfrec.server.servicer import RecommenderServicer, ServiceSettings
from mfrec.server.store import ModelStore
from mfrec.server.tls import TlsFiles, add_tls_port, server_credentials
from mfrec.v1 import recommender_pb2 as pb
from mfrec.v1 import recommender_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Recommender"].full_name
METHOD_ROLES = method_roles(pb.DESCRIPTOR.services_by_name["Recommender"])
MiB = 1024 * 1024


@dataclass(frozen=True)
class ServerConfig:
    """Everything `mfrec serve` configures."""

    model_dir: Path
    host: str = "127.0.0.1"
    port: int = 50051
    data_dir: Path | None = None
    keep_versions: int = 3
    limits: Limits = field(default_factory=Limits)
    threads: int = 8
    grace_seconds: float = 10.0
    max_message_bytes: int = 64 * MiB
    max_inline_ratings: int = 2_000_000
    rating_range: tuple[float, float] | None = None
    max_concurrent_rpcs: int | None = None
    tokens_file: Path | None = None
    tls: TlsFiles | None = None
    insecure_listen_any: bool = False
    # When set, connections are closed (gracefully) after this age, so long-lived clients
    # spread over the workers of --workers, which set it; None keeps connections open.
    max_connection_age_seconds: float | None = None
    max_connection_age_grace_seconds: float = 10.0
    # Set by the supervisor of --workers: share the port, watch the model dir for new
    # versions every poll_seconds, and keep training jobs in shared records (filejobs).
    reuse_port: bool = False
    poll_seconds: float = 0.0
    shared_jobs: bool = False


class StartupError(Exception):
    """The configuration cannot be served safely or at all; the message says what to change."""


@dataclass
class RunningServer:
    """A started server and the parts a caller may need (tests, the process main)."""

    server: grpc.Server
    port: int
    store: ModelStore
    jobs: TrainingJobs | FileJobs
    health: health.HealthServicer
    drain: Drain | None = None

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE_NAME):
            self.health.set(name, status)

    def stop(self, grace: float | None) -> None:
        """Marks the server NOT_SERVING, then stops it, letting in-flight calls finish.

        NOT_SERVING is permanent from here on: a model swapped in while draining (a training
        job finishing) must not flip health back to SERVING.
        """
        self.health.enter_graceful_shutdown()
        self.store.stop_polling()
        self.server.stop(grace).wait()

    def shutdown(self, grace: float) -> None:
        """Drains within grace seconds, then stops: what SIGTERM and SIGINT do.

        Health turns NOT_SERVING; new Recommender calls get UNAVAILABLE at once while those
        in flight finish, until callers are quiet (see drain.QUIET_SECONDS); then the server
        stops, which also ends health watches.
        """
        self.health.enter_graceful_shutdown()
        started = time.monotonic()
        drained = self.drain is None or self.drain.drain(grace)
        self.stop(0.0 if drained else max(0.0, grace - (time.monotonic() - started)))


def build_server(config: ServerConfig) -> RunningServer:
    """Creates, binds and starts a server; loads the newest valid model first.

    Binding port 0 picks a free port, which RunningServer.port reports. Signals are left to
    the caller, so tests can build servers freely.

    Raises:
        StartupError: the host is not loopback and no tokens are configured (without
            insecure_listen_any).
        TokenFileError, TlsError: the tokens file or a TLS file is unusable.
    """
    _check_exposure(config)
    drain = Drain(SERVICE_NAME)
    interceptors: list[grpc.ServerInterceptor] = [drain]
    if config.tokens_file is not None:
        interceptors.append(TokenAuthInterceptor(load_tokens(config.tokens_file), METHOD_ROLES))
    credentials = server_credentials(config.tls) if config.tls is not None else None
    store = ModelStore(config.model_dir, config.keep_versions)
    store.load_newest()
    jobs = FileJobs(config.model_dir, store.refresh_to) if config.shared_jobs else TrainingJobs()
    settings = ServiceSettings(
        limits=config.limits,
        data_dir=config.data_dir,
        rating_range=config.rating_range,
        max_inline_ratings=config.max_inline_ratings,
    )
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 1 if config.reuse_port else 0),
    ]
    if config.max_connection_age_seconds is not None:
        options.append(("grpc.max_connection_age_ms", int(config.max_connection_age_seconds * 1e3)))
        options.append(
            ("grpc.max_connection_age_grace_ms", int(config.max_connection_age_grace_seconds * 1e3))
        )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="rpc"),
        options=options,
        interceptors=interceptors,
        maximum_concurrent_rpcs=config.max_concurrent_rpcs or 4 * config.threads,
    )
    pb_grpc.add_RecommenderServicer_to_server(RecommenderServicer(store, jobs, settings), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    address = f"{_host_for_bind(config.host)}:{config.port}"
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = add_tls_port(server, address, credentials)
    if port == 0:
        raise OSError(f"could not bind {config.host}:{config.port}")
    running = RunningServer(server, port, store, jobs, health_servicer, drain)
    running.set_serving(store.current is not None)
    store.add_listener(lambda model: running.set_serving(True))
    if isinstance(jobs, FileJobs):
        jobs.watch(store)
    server.start()
    if config.poll_seconds > 0:
        store.start_polling(config.poll_seconds)
    return running


def _check_exposure(config: ServerConfig) -> None:
    """Refuses to serve beyond loopback without tokens, unless told to (then warns)."""
    if config.tokens_file is not None or is_loopback(config.host):
        return
    if not config.insecure_listen_any:
        raise StartupError(
            f"refusing to listen on {config.host} without --tokens-file: anyone who can reach "
            "it could train and replace the model; give --tokens-file, listen on 127.0.0.1, "
            "or pass --insecure-listen-any to accept the risk"
        )
    log.warning(
        "listening on %s without tokens (--insecure-listen-any): every caller may train "
        "and replace the model",
        config.host,
    )


def _host_for_bind(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def serve(config: ServerConfig) -> int:
    """Runs a server until SIGTERM or SIGINT, then drains it within the grace period."""
    tune_malloc()
    running = build_server(config)
    model = running.store.current
    log.info(
        "listening on %s:%d, serving %s",
        config.host,
        running.port,
        model.version if model else "no model (NOT_SERVING until a Train succeeds)",
    )
    stopping = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        if stopping.is_set():
            return
        stopping.set()
        log.info(
            "received %s, draining for up to %.0f s",
            signal.Signals(signum).name,
            config.grace_seconds,
        )
        threading.Thread(target=running.shutdown, args=(config.grace_seconds,), daemon=True).start()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    running.server.wait_for_termination()
    log.info("stopped")
    return 0
