"""Bearer-token access control: the tokens file, the role each RPC needs, and the interceptor.

Callers send `authorization: Bearer <token>` metadata. A token has one role: `read` may call
the RPCs that only read the serving model; `admin` may call every RPC, including Train and
GetTrainingJob. Services other than Recommender that must stay reachable without a token
(health, reflection) are listed in OPEN_SERVICES; any other unknown method needs admin.
Tokens are never logged or echoed, and a presented token is compared with every configured
one in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor

log = logging.getLogger(__name__)

ADMIN = "admin"
READ = "read"
ROLES = (ADMIN, READ)
# The Recommender RPCs a read token may call; every other RPC of the service needs admin, so
# an RPC added to the contract later is admin-only until it is listed here.
READ_METHODS = frozenset({"Recommend", "RecommendBatch", "SimilarItems", "GetModelInfo"})
OPEN_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
_SCHEME = "bearer"


class TokenFileError(ValueError):
    """The tokens file cannot be read or has a malformed line; never names a token."""


@dataclass(frozen=True)
class Tokens:
    """The configured tokens, kept as SHA-256 digests with their roles."""

    digests: tuple[tuple[str, bytes], ...]

    def role_of(self, presented: str) -> str | None:
        """Returns the role of a presented token, or None when it matches none.

        Every configured token is compared, with hmac.compare_digest on equal-length digests,
        so the time taken says nothing about which token (or how much of one) matched.
        """
        digest = _digest(presented)
        matched: str | None = None
        for role, expected in self.digests:  # no early exit; tokens are unique (parse_tokens)
            if hmac.compare_digest(digest, expected):
                matched = role
        return matched

    def __len__(self) -> int:
        return len(self.digests)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", errors="surrogatepass")).digest()


def parse_tokens(text: str, source: str) -> Tokens:
    """Parses `role:token` lines; blank lines and lines starting with # are skipped.

    Raises:
        TokenFileError: naming source and the line number of the first bad line.
    """
    entries: list[tuple[str, bytes]] = []
    first_line: dict[bytes, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        role, token = _parse_line(stripped, f"{source}, line {number}")
        digest = _digest(token)
        if digest in first_line:
            raise TokenFileError(
                f"{source}, line {number}: this token is already given on line "
                f"{first_line[digest]}; give each token once, with one role"
            )
        first_line[digest] = number
        entries.append((role, digest))
    if not entries:
        raise TokenFileError(f"{source} holds no tokens; add lines of the form role:token")
    return Tokens(tuple(entries))


def _parse_line(line: str, where: str) -> tuple[str, str]:
    # Messages describe the problem without quoting the line: any part of it may be a secret.
    role, colon, token = line.partition(":")
    role, token = role.strip(), token.strip()
    if not colon:
        raise TokenFileError(f"{where}: expected role:token (role admin or read)")
    if role not in ROLES:
        raise TokenFileError(f"{where}: the role before ':' must be admin or read")
    if not token:
        raise TokenFileError(f"{where}: the token after ':' is empty")
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        raise TokenFileError(
            f"{where}: the token must be printable ASCII without spaces (it is sent as "
            "gRPC metadata)"
        )
    return role, token


def load_tokens(path: Path) -> Tokens:
    """Reads a tokens file (see parse_tokens)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8"
        raise TokenFileError(f"cannot read the tokens file {path}: {reason}") from None
    return parse_tokens(text, f"tokens file {path}")


def method_roles(service: ServiceDescriptor) -> dict[str, str]:
    """Maps each RPC's full path ("/package.Service/Method") to the role it needs."""
    return {
        f"/{service.full_name}/{method.name}": READ if method.name in READ_METHODS else ADMIN
        for method in service.methods
    }


def is_loopback(host: str) -> bool:
    """Tells whether host names only this machine (localhost, 127.0.0.0/8, ::1)."""
    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _bearer_token(metadata: Iterable[Any] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == _SCHEME and token.strip():
                return token.strip()
            return None
    return None


def _refusal(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler[Any, Any]:
    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(refuse)


_UNAUTHENTICATED = _refusal(
    grpc.StatusCode.UNAUTHENTICATED,
    "a valid token is required: send metadata 'authorization: Bearer <token>'",
)


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Lets a call through only when its bearer token has the role its method needs."""

    def __init__(self, tokens: Tokens, roles: Mapping[str, str]) -> None:
        self._tokens = tokens
        self._roles = dict(roles)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        if _service_of(method) in OPEN_SERVICES:
            return continuation(handler_call_details)
        needed = self._roles.get(method, ADMIN)
        token = _bearer_token(handler_call_details.invocation_metadata)
        role = None if token is None else self._tokens.role_of(token)
        if role is None:
            log.debug("refused %s: no valid token", method)
            return _UNAUTHENTICATED
        if needed == ADMIN and role != ADMIN:
            log.debug("refused %s: a %s token cannot call it", method, role)
            return _refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{method.rsplit('/', 1)[-1]} needs an admin token; this token may only read",
            )
        return continuation(handler_call_details)


def _service_of(method: str) -> str:
    return method.lstrip("/").partition("/")[0]
