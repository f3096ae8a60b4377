"""Server TLS: credentials from PEM files, mutual TLS when a client CA is given."""

from __future__ import annotations

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
