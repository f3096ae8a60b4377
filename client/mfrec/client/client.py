"""RecommenderClient: a typed, blocking client for the mfrec.v1.Recommender service."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from datetime import UTC
from types import TracebackType
from typing import Any

import grpc

from mfrec.client.errors import RecommenderError
from mfrec.client.results import (
    JobState,
    ModelInfo,
    Recommendations,
    ScoredItem,
    SimilarItems,
    Source,
    TrainingConfig,
    TrainingJob,
)
from mfrec.v1 import recommender_pb2 as pb
from mfrec.v1 import recommender_pb2_grpc as pb_grpc

DEFAULT_TIMEOUT_SECONDS = 5.0
DEFAULT_POLL_SECONDS = 0.2
DEFAULT_TRAIN_TIMEOUT_SECONDS = 3600.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_FORMATS = {
    "ml-100k": pb.DATASET_FORMAT_ML_100K,
    "ml-csv": pb.DATASET_FORMAT_ML_CSV,
    "ml-dat": pb.DATASET_FORMAT_ML_DAT,
    "csv": pb.DATASET_FORMAT_CSV,
}
_ALGORITHMS = {
    "": pb.ALGORITHM_UNSPECIFIED,
    "als-explicit": pb.ALGORITHM_ALS_EXPLICIT,
    "bpmf": pb.ALGORITHM_BPMF,
    "als-implicit": pb.ALGORITHM_ALS_IMPLICIT,
}
_ALGORITHM_NAMES = {value: name for name, value in _ALGORITHMS.items()}
_SOURCES = {
    pb.RECOMMENDATION_SOURCE_PERSONALIZED: Source.PERSONALIZED,
    pb.RECOMMENDATION_SOURCE_POPULAR: Source.POPULAR,
    pb.RECOMMENDATION_SOURCE_FOLD_IN: Source.FOLD_IN,
}
_STATES = {
    pb.TRAINING_JOB_STATE_RUNNING: JobState.RUNNING,
    pb.TRAINING_JOB_STATE_SUCCEEDED: JobState.SUCCEEDED,
    pb.TRAINING_JOB_STATE_FAILED: JobState.FAILED,
}

# Reads are idempotent, so a call that finds the server UNAVAILABLE (restarting, or a
# connection being rebalanced) is retried; Train is not, since it may have started a job.
_RETRY_POLICY = {
    "maxAttempts": 4,
    "initialBackoff": "0.1s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
_IDEMPOTENT = ("Recommend", "RecommendBatch", "SimilarItems", "GetTrainingJob", "GetModelInfo")
SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "mfrec.v1.Recommender", "method": m} for m in _IDEMPOTENT],
                "retryPolicy": _RETRY_POLICY,
            }
        ]
    }
)


class RecommenderClient:
    """A connection to an mfrec server. Use it as a context manager, or call close().

    Args:
        target: "host:port" of the server.
        timeout: the deadline of every call in seconds, unless a call overrides it.
        token: a bearer token sent as `authorization` metadata on every call.
        root_certificates: PEM CA bundle; when given (or when `tls` is true) the channel uses
            TLS, else it is plaintext (fine on loopback).
        certificate_chain, private_key: PEM client certificate and key for mutual TLS.
        options: extra gRPC channel options.
    """

    def __init__(
        self,
        target: str,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        *,
        token: str | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        certificate_chain: bytes | None = None,
        private_key: bytes | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if token is not None and (not token or token != token.strip() or "\n" in token):
            raise ValueError("token must be non-empty, without surrounding whitespace or newlines")
        channel_options: list[tuple[str, Any]] = [
            ("grpc.service_config", SERVICE_CONFIG),
            ("grpc.enable_retries", 1),
            # As large as the server's default limit: a full batch of k = 1000 answers is ~12 MB.
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        channel_options.extend(options)
        if tls or root_certificates or certificate_chain:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=root_certificates,
                private_key=private_key,
                certificate_chain=certificate_chain,
            )
            self._channel = grpc.secure_channel(target, credentials, options=channel_options)
        else:
            self._channel = grpc.insecure_channel(target, options=channel_options)
        self._stub = pb_grpc.RecommenderStub(self._channel)
        self._timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def __enter__(self) -> RecommenderClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return method(
                request,
                timeout=self._timeout if timeout is None else timeout,
                metadata=self._metadata,
            )
        except grpc.RpcError as error:
            raise RecommenderError.from_rpc_error(error) from None

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        exclude: Iterable[str] = (),
        include_seen: bool = False,
        *,
        recent: Iterable[str] = (),
        recent_values: Iterable[float] = (),
        allowed: Iterable[str] = (),
        timeout: float | None = None,
    ) -> Recommendations:
        """Returns the top-k items for a user, best first.

        Args:
            user_id: the user's id as in the training data.
            k: how many items; 0 means the server default (10).
            exclude: item ids never to return.
            include_seen: allow items the user rated in training.
            recent: items the user just interacted with: they personalize an unknown user
                (fold-in) and are never returned.
            recent_values: optional strength of each recent item.
            allowed: when non-empty, the only candidate items.
        """
        request = _recommend_request(
            user_id, k, exclude, include_seen, recent, recent_values, allowed
        )
        return _recommendations(self._call(self._stub.Recommend, request, timeout))

    def recommend_batch(
        self, requests: Iterable[dict[str, Any] | str], *, timeout: float | None = None
    ) -> list[Recommendations]:
        """Answers many recommend requests in one call, in the same order.

        Each request is a user id, or a dict of recommend()'s keyword arguments (user_id, k,
        exclude, include_seen, recent, recent_values, allowed).
        """
        built = [
            _recommend_request(r) if isinstance(r, str) else _recommend_request(**r)
            for r in requests
        ]
        response = self._call(
            self._stub.RecommendBatch, pb.RecommendBatchRequest(requests=built), timeout
        )
        return [_recommendations(r) for r in response.responses]

    def similar_items(
        self,
        item_id: str,
        k: int = 10,
        exclude: Iterable[str] = (),
        *,
        timeout: float | None = None,
    ) -> SimilarItems:
        """Returns the k items most similar to item_id (cosine similarity of embeddings)."""
        if not isinstance(item_id, str):
            raise TypeError(f"item_id must be a str, got {type(item_id).__name__}")
        request = pb.SimilarItemsRequest(
            item_id=item_id, k=k, exclude_item_ids=_ids(exclude, "exclude")
        )
        response = self._call(self._stub.SimilarItems, request, timeout)
        return SimilarItems(_items(response.items), response.model_version)

    def train(
        self,
        dataset_path: str = "",
        dataset_format: str = "",
        *,
        ratings: Iterable[tuple[str, str, float] | tuple[str, str, float, int]] = (),
        config: TrainingConfig | None = None,
        csv_options: dict[str, str] | None = None,
        wait: bool = True,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        wait_timeout: float = DEFAULT_TRAIN_TIMEOUT_SECONDS,
        timeout: float | None = None,
    ) -> TrainingJob:
        """Starts a training job; with wait, polls it until it ends and returns it.

        Give either dataset_path (relative to the server's --data-dir) with dataset_format
        (ml-100k, ml-csv, ml-dat or csv), or ratings as (user_id, item_id, value[, timestamp])
        tuples. A job that ends FAILED is returned, not raised: check job.state and job.error.
        """
        request = pb.TrainRequest(dataset_path=dataset_path)
        if dataset_format:
            if dataset_format not in _FORMATS:
                raise ValueError(f"dataset_format must be one of {', '.join(_FORMATS)}")
            request.dataset_format = _FORMATS[dataset_format]
        for rating in ratings:
            if len(rating) not in (3, 4):
                raise ValueError(
                    "each rating must be (user_id, item_id, value) or "
                    f"(user_id, item_id, value, timestamp), got {rating!r}"
                )
            timestamp = int(rating[3]) if len(rating) > 3 else 0
            request.ratings.add(
                user_id=rating[0], item_id=rating[1], value=float(rating[2]), timestamp=timestamp
            )
        if csv_options:
            request.csv_options.CopyFrom(pb.CsvOptions(**csv_options))
        if config is not None:
            request.config.CopyFrom(_config_to_proto(config))
        job = _job(self._call(self._stub.Train, request, timeout))
        if not wait:
            return job
        return self.wait_for_job(job.job_id, poll_seconds=poll_seconds, wait_timeout=wait_timeout)

    def wait_for_job(
        self,
        job_id: str,
        *,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        wait_timeout: float = DEFAULT_TRAIN_TIMEOUT_SECONDS,
    ) -> TrainingJob:
        """Polls a job until it ends; raises RecommenderError(DEADLINE_EXCEEDED) after
        wait_timeout seconds."""
        deadline = time.monotonic() + wait_timeout
        while True:
            job = self.training_job(job_id)
            if job.done:
                return job
            if time.monotonic() >= deadline:
                raise RecommenderError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"training job {job_id} still running after {wait_timeout} s",
                )
            time.sleep(poll_seconds)

    def training_job(self, job_id: str, *, timeout: float | None = None) -> TrainingJob:
        """Returns the current state of a training job."""
        request = pb.GetTrainingJobRequest(job_id=job_id)
        return _job(self._call(self._stub.GetTrainingJob, request, timeout))

    def model_info(self, *, timeout: float | None = None) -> ModelInfo:
        """Describes the model currently serving."""
        info = self._call(self._stub.GetModelInfo, pb.GetModelInfoRequest(), timeout)
        return ModelInfo(
            model_version=info.model_version,
            trained_at=(
                info.trained_at.ToDatetime(tzinfo=UTC) if info.HasField("trained_at") else None
            ),
            user_count=info.user_count,
            item_count=info.item_count,
            rating_count=info.rating_count,
            validation_rmse=info.validation_rmse if info.HasField("validation_rmse") else None,
            config=_config_from_proto(info.config),
            metrics=dict(info.metrics),
        )


def _recommend_request(
    user_id: str,
    k: int = 10,
    exclude: Iterable[str] = (),
    include_seen: bool = False,
    recent: Iterable[str] = (),
    recent_values: Iterable[float] = (),
    allowed: Iterable[str] = (),
) -> pb.RecommendRequest:
    if not isinstance(user_id, str):
        raise TypeError(f"user_id must be a str, got {type(user_id).__name__}")
    return pb.RecommendRequest(
        user_id=user_id,
        k=k,
        exclude_item_ids=_ids(exclude, "exclude"),
        include_seen=include_seen,
        recent_item_ids=_ids(recent, "recent"),
        recent_values=list(recent_values),
        allowed_item_ids=_ids(allowed, "allowed"),
    )


def _ids(values: Iterable[str], name: str) -> list[str]:
    """Returns a list of ids, refusing a bare string (which would iterate as characters)."""
    if isinstance(values, str | bytes):
        raise TypeError(f"{name} must be a list of ids, not a single string: use [{values!r}]")
    ids = list(values)
    for value in ids:
        if not isinstance(value, str):
            raise TypeError(f"{name} must hold str ids, got {type(value).__name__}")
    return ids


def _items(items: Iterable[pb.ScoredItem]) -> list[ScoredItem]:
    return [ScoredItem(item.item_id, item.score) for item in items]


def _recommendations(response: pb.RecommendResponse) -> Recommendations:
    return Recommendations(
        items=_items(response.items),
        source=_SOURCES.get(response.source, Source.PERSONALIZED),
        model_version=response.model_version,
        ignored_item_ids=list(response.ignored_item_ids),
    )


def _job(job: pb.TrainingJob) -> TrainingJob:
    return TrainingJob(
        job_id=job.job_id,
        state=_STATES.get(job.state, JobState.RUNNING),
        iteration=job.iteration,
        total_iterations=job.total_iterations,
        error=job.error,
        model_version=job.model_version,
        user_count=job.user_count,
        item_count=job.item_count,
        rating_count=job.rating_count,
        validation_rmse=job.validation_rmse if job.HasField("validation_rmse") else None,
        train_seconds=job.train_seconds,
        metrics=dict(job.metrics),
    )


def _config_to_proto(config: TrainingConfig) -> pb.TrainingConfig:
    if config.algorithm not in _ALGORITHMS:
        names = ", ".join(name for name in _ALGORITHMS if name)
        raise ValueError(f"algorithm must be one of {names}")
    message = pb.TrainingConfig(
        factors=config.factors,
        iterations=config.iterations,
        regularization=config.regularization,
        seed=config.seed,
        algorithm=_ALGORITHMS[config.algorithm],
        alpha=config.alpha,
    )
    if config.validation_fraction is not None:
        message.validation_fraction = config.validation_fraction
    return message


def _config_from_proto(config: pb.TrainingConfig) -> TrainingConfig:
    return TrainingConfig(
        factors=config.factors,
        iterations=config.iterations,
        regularization=config.regularization,
        seed=config.seed,
        validation_fraction=(
            config.validation_fraction if config.HasField("validation_fraction") else None
        ),
        algorithm=_ALGORITHM_NAMES.get(config.algorithm, ""),
        alpha=config.alpha,
    )
