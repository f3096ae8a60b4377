"""The gRPC adapter: proto in, core call, proto out, and every exception mapped to a status."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from mfrec.server import recommender
from mfrec.server.errors import (
    FailedPrecondition,
    InvalidRequest,
    JobConflict,
    NoModel,
    NotFound,
    ServingError,
)
from mfrec.server.filejobs import FileJobs
from mfrec.server.jobs import JobState, JobStatus, TrainingJobs
from mfrec.server.recommender import Limits, Recommendation, RecommendQuery, Source
from mfrec.server.store import ModelStore
from mfrec.server.trainer import (
    FileSource,
    InlineSource,
    check_inline,
    resolve_dataset_path,
    training_job,
)
from mfrec.training.config import ALGORITHMS, ConfigError, TrainingConfig
from mfrec.v1 import recommender_pb2 as pb
from mfrec.v1 import recommender_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

_STATUS: dict[type[ServingError], grpc.StatusCode] = {
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    NoModel: grpc.StatusCode.UNAVAILABLE,
    JobConflict: grpc.StatusCode.ABORTED,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
}
_SOURCES = {
    Source.PERSONALIZED: pb.RECOMMENDATION_SOURCE_PERSONALIZED,
    Source.POPULAR: pb.RECOMMENDATION_SOURCE_POPULAR,
    Source.FOLD_IN: pb.RECOMMENDATION_SOURCE_FOLD_IN,
}
_JOB_STATES = {
    JobState.RUNNING: pb.TRAINING_JOB_STATE_RUNNING,
    JobState.SUCCEEDED: pb.TRAINING_JOB_STATE_SUCCEEDED,
    JobState.FAILED: pb.TRAINING_JOB_STATE_FAILED,
}
_FORMATS = {
    pb.DATASET_FORMAT_ML_100K: "ml-100k",
    pb.DATASET_FORMAT_ML_CSV: "ml-csv",
    pb.DATASET_FORMAT_ML_DAT: "ml-dat",
    pb.DATASET_FORMAT_CSV: "csv",
}
_ALGORITHMS = {
    pb.ALGORITHM_UNSPECIFIED: ALGORITHMS[0],
    pb.ALGORITHM_ALS_EXPLICIT: "als-explicit",
    pb.ALGORITHM_BPMF: "bpmf",
    pb.ALGORITHM_ALS_IMPLICIT: "als-implicit",
}
_ALGORITHM_ENUMS = {name: value for value, name in _ALGORITHMS.items() if value}

Response = TypeVar("Response")
_MAX_JOB_ID_CHARS = 64


def status_code(error: Exception) -> tuple[grpc.StatusCode, str]:
    """Maps an exception to a status code and a message that is safe to send."""
    for kind, code in _STATUS.items():
        if isinstance(error, kind):
            return code, str(error)
    if isinstance(error, ConfigError):
        return grpc.StatusCode.INVALID_ARGUMENT, f"config: {error}"
    return grpc.StatusCode.INTERNAL, "internal error; the server log has the details"


def _handled(method: Callable[..., Response]) -> Callable[..., Response]:
    """Turns every exception a handler raises into an aborted call with the right status."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Response:
        try:
            return method(self, request, context)
        except Exception as error:
            code, message = status_code(error)
            if code == grpc.StatusCode.INTERNAL:
                log.exception("%s failed", method.__name__)
            context.abort(code, message)
            raise  # unreachable: abort raises

    return wrapper


@dataclass(frozen=True)
class ServiceSettings:
    """What the servicer needs beyond the store: limits and training policy."""

    limits: Limits = Limits()
    data_dir: Path | None = None
    rating_range: tuple[float, float] | None = None
    max_inline_ratings: int = 2_000_000


class RecommenderServicer(pb_grpc.RecommenderServicer):
    """Implements mfrec.v1.Recommender on a model store and a job runner."""

    def __init__(
        self, store: ModelStore, jobs: TrainingJobs | FileJobs, settings: ServiceSettings
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.settings = settings

    @_handled
    def Recommend(
        self, request: pb.RecommendRequest, context: grpc.ServicerContext
    ) -> pb.RecommendResponse:
        query = query_from_proto(request)
        model = self.store.require()
        return recommendation_to_proto(recommender.recommend(model, query, self.settings.limits))

    @_handled
    def RecommendBatch(
        self, request: pb.RecommendBatchRequest, context: grpc.ServicerContext
    ) -> pb.RecommendBatchResponse:
        limits = self.settings.limits
        if len(request.requests) > limits.max_batch:
            raise InvalidRequest(
                f"requests has {len(request.requests)} entries; at most {limits.max_batch} "
                "are allowed per call"
            )
        if not request.requests:
            return pb.RecommendBatchResponse()
        queries = [query_from_proto(sub) for sub in request.requests]
        model = self.store.require()
        answers = recommender.recommend_batch(model, queries, limits)
        response = pb.RecommendBatchResponse()
        for answer in answers:
            _fill_response(response.responses.add(), answer)
        return response

    @_handled
    def SimilarItems(
        self, request: pb.SimilarItemsRequest, context: grpc.ServicerContext
    ) -> pb.SimilarItemsResponse:
        model = self.store.require()
        items = recommender.similar_items(
            model,
            request.item_id,
            request.k,
            tuple(request.exclude_item_ids),
            self.settings.limits,
        )
        return pb.SimilarItemsResponse(
            items=[pb.ScoredItem(item_id=i, score=s) for i, s in items],
            model_version=model.version,
        )

    @_handled
    def Train(self, request: pb.TrainRequest, context: grpc.ServicerContext) -> pb.TrainingJob:
        config = config_from_proto(request.config)
        source = self._source(request)
        resolved = config.resolved()
        if isinstance(self.jobs, FileJobs):  # --workers: the supervisor's trainer runs it
            return job_to_proto(self.jobs.submit(source, config, resolved.total_sweeps()))
        body = training_job(
            self.store,
            source,
            config,
            self.settings.rating_range,
            max_id_bytes=self.settings.limits.max_id_bytes,
        )
        return job_to_proto(self.jobs.start(body, resolved.total_sweeps()))

    @_handled
    def GetTrainingJob(
        self, request: pb.GetTrainingJobRequest, context: grpc.ServicerContext
    ) -> pb.TrainingJob:
        if not request.job_id:
            raise InvalidRequest("job_id is required")
        if len(request.job_id) > _MAX_JOB_ID_CHARS:
            raise InvalidRequest("job_id is not a job id: ids are 32 hexadecimal characters")
        return job_to_proto(self.jobs.get(request.job_id))

    @_handled
    def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> pb.ModelInfo:
        model = self.store.current
        if model is None:
            raise FailedPrecondition(str(NoModel()))
        return model_info_to_proto(model)

    def _source(self, request: pb.TrainRequest) -> FileSource | InlineSource:
        has_path, has_ratings = bool(request.dataset_path), len(request.ratings) > 0
        if has_path == has_ratings:
            raise InvalidRequest("give exactly one of dataset_path and ratings")
        if has_path:
            fmt = _FORMATS.get(request.dataset_format)
            if fmt is None:
                raise InvalidRequest(
                    "dataset_format is required with dataset_path (ML_100K, ML_CSV, ML_DAT, CSV)"
                )
            path = resolve_dataset_path(self.settings.data_dir, request.dataset_path)
            return FileSource(path, request.dataset_path, fmt, csv_options_from_proto(request))
        if len(request.ratings) > self.settings.max_inline_ratings:
            raise InvalidRequest(
                f"ratings has {len(request.ratings)} entries; at most "
                f"{self.settings.max_inline_ratings} are allowed inline"
            )
        source = inline_from_proto(request.ratings, self.settings.limits)
        check_inline(source, self.settings.rating_range)
        return source


def query_from_proto(request: pb.RecommendRequest) -> RecommendQuery:
    return RecommendQuery(
        user_id=request.user_id,
        k=request.k,
        exclude_item_ids=tuple(request.exclude_item_ids),
        include_seen=request.include_seen,
        recent_item_ids=tuple(request.recent_item_ids),
        recent_values=tuple(request.recent_values),
        allowed_item_ids=tuple(request.allowed_item_ids),
    )


def recommendation_to_proto(answer: Recommendation) -> pb.RecommendResponse:
    response = pb.RecommendResponse()
    _fill_response(response, answer)
    return response


def _fill_response(response: pb.RecommendResponse, answer: Recommendation) -> None:
    # items.add builds each item inside the message: a third of the cost of constructing
    # ScoredItem objects and copying them in, which matters for 10,000-item batches.
    add = response.items.add
    for item_id, score in answer.items:
        add(item_id=item_id, score=score)
    response.source = _SOURCES[answer.source]
    response.model_version = answer.model_version
    response.ignored_item_ids.extend(answer.ignored_item_ids)


def config_from_proto(config: pb.TrainingConfig) -> TrainingConfig:
    algorithm = _ALGORITHMS.get(config.algorithm)
    if algorithm is None:
        raise InvalidRequest(f"config.algorithm {config.algorithm} is not a known algorithm")
    result = TrainingConfig(
        algorithm=algorithm,
        factors=config.factors,
        iterations=config.iterations,
        regularization=config.regularization,
        seed=config.seed,
        validation_fraction=(
            config.validation_fraction if config.HasField("validation_fraction") else None
        ),
        alpha=config.alpha,
    )
    result.check()
    return result


def config_to_proto(config: TrainingConfig) -> pb.TrainingConfig:
    return pb.TrainingConfig(
        factors=config.factors,
        iterations=config.iterations,
        regularization=config.regularization,
        seed=config.seed,
        validation_fraction=config.validation_fraction or 0.0,
        algorithm=_ALGORITHM_ENUMS.get(config.algorithm, pb.ALGORITHM_UNSPECIFIED),
        alpha=config.alpha,
    )


def csv_options_from_proto(request: pb.TrainRequest) -> dict[str, str]:
    options = request.csv_options
    names = {
        "separator": options.separator,
        "user_column": options.user_column,
        "item_column": options.item_column,
        "rating_column": options.rating_column,
        "timestamp_column": options.timestamp_column,
    }
    return {key: value for key, value in names.items() if value}


def inline_from_proto(ratings: Any, limits: Limits) -> InlineSource:
    user_ids = [r.user_id for r in ratings]
    item_ids = [r.item_id for r in ratings]
    for name, ids in (("user_id", user_ids), ("item_id", item_ids)):
        for position, value in enumerate(ids):
            if len(value.encode("utf-8")) > limits.max_id_bytes:
                raise InvalidRequest(
                    f"ratings[{position}].{name} is longer than {limits.max_id_bytes} bytes"
                )
    return InlineSource(
        user_ids=user_ids,
        item_ids=item_ids,
        values=[r.value for r in ratings],
        timestamps=[r.timestamp for r in ratings],
    )


def job_to_proto(status: JobStatus) -> pb.TrainingJob:
    job = pb.TrainingJob(
        job_id=status.job_id,
        state=_JOB_STATES[status.state],
        iteration=status.iteration,
        total_iterations=status.total_iterations,
        error=status.error,
        train_seconds=status.train_seconds,
    )
    result = status.result
    if result is not None:
        job.model_version = result.model_version
        job.user_count = result.user_count
        job.item_count = result.item_count
        job.rating_count = result.rating_count
        if result.validation_rmse is not None:
            job.validation_rmse = result.validation_rmse
        job.metrics.update(result.metrics)
    return job


def model_info_to_proto(model: Any) -> pb.ModelInfo:
    metadata = model.metadata
    info = pb.ModelInfo(
        model_version=model.version,
        user_count=int(metadata.get("user_count", 0)),
        item_count=int(metadata.get("item_count", 0)),
        rating_count=int(metadata.get("rating_count", 0)),
        config=config_to_proto(TrainingConfig.from_dict(metadata.get("config", {}))),
    )
    trained_at = model.trained_at
    if trained_at is not None:
        stamp = Timestamp()
        stamp.FromDatetime(trained_at)
        info.trained_at.CopyFrom(stamp)
    metrics = metadata.get("metrics", {})
    if "rmse" in metrics:
        info.validation_rmse = float(metrics["rmse"])
    info.metrics.update({k: float(v) for k, v in metrics.items()})
    return info
