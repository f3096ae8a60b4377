"""TLS and mutual TLS between the server and the typed client, with throwaway certificates."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import trustme

from mfrec.client import JobState, RecommenderClient, RecommenderError, TrainingConfig
from mfrec.server.tls import TlsError, TlsFiles, server_credentials, tls_files
from tests.integration.conftest import ServerFactory
from tests.integration.test_auth import ADMIN_TOKEN, write_tokens

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Pki:
    """Certificates made for one test run; nothing here is ever committed."""

    server: TlsFiles
    ca_pem: bytes
    client_cert: bytes
    client_key: bytes
    stranger_ca_pem: bytes
    stranger_cert: bytes
    stranger_key: bytes


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    server_ca, client_ca, stranger_ca = trustme.CA(), trustme.CA(), trustme.CA()
    issued = server_ca.issue_cert("127.0.0.1", "localhost")  # an IP SAN for 127.0.0.1
    issued.private_key_pem.write_to_path(root / "server.key")
    for position, blob in enumerate(issued.cert_chain_pems):
        blob.write_to_path(root / "server.pem", append=position > 0)
    client_ca.cert_pem.write_to_path(root / "client-ca.pem")
    client = client_ca.issue_cert("client.example")
    stranger = stranger_ca.issue_cert("client.example")
    return Pki(
        server=TlsFiles(root / "server.pem", root / "server.key", root / "client-ca.pem"),
        ca_pem=server_ca.cert_pem.bytes(),
        client_cert=b"".join(blob.bytes() for blob in client.cert_chain_pems),
        client_key=client.private_key_pem.bytes(),
        stranger_ca_pem=stranger_ca.cert_pem.bytes(),
        stranger_cert=b"".join(blob.bytes() for blob in stranger.cert_chain_pems),
        stranger_key=stranger.private_key_pem.bytes(),
    )


def _tls_only(pki: Pki) -> TlsFiles:
    return TlsFiles(pki.server.cert, pki.server.key)


def _unavailable(client: RecommenderClient) -> str:
    with pytest.raises(RecommenderError) as caught:
        client.recommend("u1")
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    return caught.value.message


def test_tls_serves_a_client_that_trusts_the_ca(
    start_server: ServerFactory, model_dir: Path, pki: Pki
) -> None:
    running = start_server(model_dir, tls=_tls_only(pki))
    for host in ("127.0.0.1", "localhost"):
        with RecommenderClient(f"{host}:{running.port}", root_certificates=pki.ca_pem) as client:
            answer = client.recommend("u1", k=3)
        assert answer.model_version == running.store.require().version


def test_tls_refuses_plaintext_and_untrusted_servers(
    start_server: ServerFactory, model_dir: Path, pki: Pki
) -> None:
    running = start_server(model_dir, tls=_tls_only(pki))
    target = f"127.0.0.1:{running.port}"
    with RecommenderClient(target, timeout=10) as plaintext:
        _unavailable(plaintext)
    with RecommenderClient(target, timeout=10, root_certificates=pki.stranger_ca_pem) as wrong:
        assert "handshake" in _unavailable(wrong).lower()
    with RecommenderClient(target, root_certificates=pki.ca_pem) as client:
        assert client.recommend("u1").items  # the server is unharmed


def test_mutual_tls_requires_a_client_certificate_from_the_client_ca(
    start_server: ServerFactory, model_dir: Path, pki: Pki
) -> None:
    running = start_server(model_dir, tls=pki.server)
    target = f"127.0.0.1:{running.port}"
    with RecommenderClient(
        target,
        root_certificates=pki.ca_pem,
        certificate_chain=pki.client_cert,
        private_key=pki.client_key,
    ) as client:
        assert client.recommend("u1", k=2).items
    with RecommenderClient(target, timeout=10, root_certificates=pki.ca_pem) as no_cert:
        _unavailable(no_cert)
    with RecommenderClient(
        target,
        timeout=10,
        root_certificates=pki.ca_pem,
        certificate_chain=pki.stranger_cert,
        private_key=pki.stranger_key,
    ) as stranger:
        _unavailable(stranger)


def test_tokens_over_tls(
    start_server: ServerFactory, model_dir: Path, pki: Pki, tmp_path: Path
) -> None:
    running = start_server(model_dir, tls=_tls_only(pki), tokens_file=write_tokens(tmp_path))
    target = f"127.0.0.1:{running.port}"
    ratings = [(f"u{u}", f"i{i}", float(1 + (u * i) % 5)) for u in range(5) for i in range(4)]
    config = TrainingConfig(factors=2, iterations=2, validation_fraction=0.0)
    with RecommenderClient(target, root_certificates=pki.ca_pem, token=ADMIN_TOKEN) as admin:
        job = admin.train(ratings=ratings, config=config)
    assert job.state is JobState.SUCCEEDED, job.error
    with RecommenderClient(target, root_certificates=pki.ca_pem) as anonymous:
        with pytest.raises(RecommenderError) as caught:
            anonymous.recommend("u1")
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_incomplete_tls_flags_are_refused(pki: Pki) -> None:
    cert, key, ca = pki.server.cert, pki.server.key, pki.server.client_ca
    assert tls_files(None, None, None) is None
    assert tls_files(cert, key, None) == TlsFiles(cert, key)
    for args in ((cert, None, None), (None, key, None), (cert, None, ca)):
        with pytest.raises(TlsError, match="must be given together"):
            tls_files(*args)
    with pytest.raises(TlsError, match="--tls-client-ca needs --tls-cert"):
        tls_files(None, None, ca)


def test_unusable_tls_files_are_start_up_errors(
    start_server: ServerFactory, model_dir: Path, pki: Pki, tmp_path: Path
) -> None:
    key_text = pki.server.key.read_bytes()
    (tmp_path / "not-pem").write_text("hello\n")
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    bad = {
        TlsFiles(tmp_path / "not-pem", pki.server.key): "--tls-cert .*expected a PEM file",
        TlsFiles(pki.server.cert, pki.server.cert): "--tls-key .*holding a private key",
        TlsFiles(pki.server.key, pki.server.key): "--tls-cert .*holding a certificate",
        TlsFiles(tmp_path / "a-dir", pki.server.key): "--tls-cert .*cannot be read",
        TlsFiles(pki.server.cert, tmp_path / "dangling"): "--tls-key .*cannot be read",
        TlsFiles(pki.server.cert, pki.server.key, tmp_path / "missing"): "--tls-client-ca",
    }
    for files, message in bad.items():
        with pytest.raises(TlsError, match=message) as caught:
            server_credentials(files)
        assert key_text.decode() not in str(caught.value)


def test_a_key_of_another_certificate_is_a_clear_start_up_error(
    start_server: ServerFactory, model_dir: Path, pki: Pki, tmp_path: Path
) -> None:
    other = trustme.CA().issue_cert("127.0.0.1")
    other.private_key_pem.write_to_path(tmp_path / "other.key")
    with pytest.raises(TlsError, match="--tls-key is the private key of --tls-cert"):
        start_server(model_dir, tls=TlsFiles(pki.server.cert, tmp_path / "other.key"))
