"""Server TLS: credentials from PEM files, mutual TLS when a client CA is given."""

from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc


class TlsError(ValueError):
    """A TLS option is incomplete or names a file that is not usable PEM."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of the server's TLS identity.

    Attributes:
        cert: the server certificate chain (--tls-cert).
        key: the private key of that certificate (--tls-key).
        client_ca: CA certificates that sign client certificates (--tls-client-ca); when
            given, every client must present a certificate signed by one of them.
    """

    cert: Path
    key: Path
    client_ca: Path | None = None


def tls_files(cert: Path | None, key: Path | None, client_ca: Path | None) -> TlsFiles | None:
    """Returns the TLS files named by the three flags, None for plaintext.

    Raises:
        TlsError: the flags are given in a combination that cannot work.
    """
    if cert is None and key is None:
        if client_ca is not None:
            raise TlsError("--tls-client-ca needs --tls-cert and --tls-key as well")
        return None
    if cert is None or key is None:
        raise TlsError("--tls-cert and --tls-key must be given together")
    return TlsFiles(cert, key, client_ca)


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Reads the PEM files into server credentials; mutual TLS when client_ca is set."""
    cert = _read_pem(files.cert, "--tls-cert", b"CERTIFICATE")
    key = _read_pem(files.key, "--tls-key", b"PRIVATE KEY")
    client_ca = None
    if files.client_ca is not None:
        client_ca = _read_pem(files.client_ca, "--tls-client-ca", b"CERTIFICATE")
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def _read_pem(path: Path, flag: str, kind: bytes) -> bytes:
    # Only the path and the kind expected are reported: a key's bytes never reach a message.
    try:
        data = path.read_bytes()
    except OSError as error:
        raise TlsError(f"{flag} {path}: cannot be read ({error.strerror or error})") from None
    if b"-----BEGIN " not in data or kind not in data:
        raise TlsError(f"{flag} {path}: expected a PEM file holding a {kind.decode().lower()}")
    return data


def add_tls_port(server: grpc.Server, address: str, credentials: grpc.ServerCredentials) -> int:
    """Binds address with TLS and returns the port; tells bad credentials from a busy port.

    Raises:
        TlsError: gRPC refuses the certificate or key (for example a key of another cert).
        OSError: the address cannot be bound.
    """
    try:
        return server.add_secure_port(address, credentials)
    except RuntimeError:
        if not _credentials_accepted(credentials):
            raise TlsError(
                "the TLS certificate and key are not usable together: check that --tls-key "
                "is the private key of --tls-cert"
            ) from None
        raise OSError(f"could not bind {address}") from None


def _credentials_accepted(credentials: grpc.ServerCredentials) -> bool:
    # A loopback port 0 always binds, so a failure there can only be the credentials.
    probe = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    try:
        probe.add_secure_port("127.0.0.1:0", credentials)
    except RuntimeError:
        return False
    finally:
        probe.stop(None)
    return True
