"""The tokens file, token matching, the role of every RPC, and what counts as loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfrec.server.auth import (
    ADMIN,
    READ,
    READ_METHODS,
    TokenFileError,
    is_loopback,
    load_tokens,
    method_roles,
    parse_tokens,
)
from mfrec.v1 import recommender_pb2 as pb

ADMIN_TOKEN = "adm-9f2c41d7e0b35a86"
READ_TOKEN = "rd-4b8e0c2a71f9d653"
SERVICE = pb.DESCRIPTOR.services_by_name["Recommender"]


def test_a_tokens_file_with_comments_and_blank_lines() -> None:
    text = f"# who may call\n\nadmin:{ADMIN_TOKEN}\n   \n  read : {READ_TOKEN}  \n# end\n"
    tokens = parse_tokens(text, "tokens")
    assert len(tokens) == 2
    assert tokens.role_of(ADMIN_TOKEN) == ADMIN
    assert tokens.role_of(READ_TOKEN) == READ
    for wrong in ("", "adm", ADMIN_TOKEN + "x", ADMIN_TOKEN.upper(), f"admin:{ADMIN_TOKEN}"):
        assert tokens.role_of(wrong) is None


SECRET = "s3cr3t-value-0f-the-line"

BAD_LINES = {
    "no colon": (SECRET, "line 2: expected role:token"),
    "unknown role": (f"{SECRET}:admin", "line 2: the role before ':' must be admin or read"),
    "role in upper case": (f"ADMIN:{SECRET}", "must be admin or read"),
    "empty token": ("read:", "line 2: the token after ':' is empty"),
    "space inside token": (f"read:{SECRET} {SECRET}", "line 2: the token must be printable"),
    "non-ASCII token": (f"read:{SECRET}é", "printable ASCII"),
    "control character": (f"read:{SECRET}\x07", "printable ASCII"),
    "same token twice": (f"read:{ADMIN_TOKEN}", "line 2: this token is already given on line 1"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_a_bad_line_names_its_number_and_never_the_token(case: str) -> None:
    line, message = BAD_LINES[case]
    with pytest.raises(TokenFileError, match=message) as caught:
        parse_tokens(f"admin:{ADMIN_TOKEN}\n{line}\nread:{READ_TOKEN}\n", "tokens file t")
    text = str(caught.value)
    assert text.startswith("tokens file t, line 2")
    for secret in (SECRET, ADMIN_TOKEN, READ_TOKEN):
        assert secret not in text


def test_a_file_without_tokens_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match="holds no tokens"):
        parse_tokens("# nothing yet\n\n", "tokens")
    (tmp_path / "dir").mkdir()
    for path in (tmp_path / "missing", tmp_path / "dir"):
        with pytest.raises(TokenFileError, match="cannot read the tokens file"):
            load_tokens(path)
    (tmp_path / "latin1").write_bytes(b"read:caf\xe9\n")
    with pytest.raises(TokenFileError, match="not UTF-8"):
        load_tokens(tmp_path / "latin1")


def test_load_tokens_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"read:{READ_TOKEN}\r\nadmin:{ADMIN_TOKEN}\r\n")
    tokens = load_tokens(path)
    assert tokens.role_of(READ_TOKEN) == READ and tokens.role_of(ADMIN_TOKEN) == ADMIN


def test_every_rpc_has_a_role_and_only_reads_are_open_to_read_tokens() -> None:
    roles = method_roles(SERVICE)
    assert set(roles) == {f"/mfrec.v1.Recommender/{m.name}" for m in SERVICE.methods}
    reads = {path.rsplit("/", 1)[1] for path, role in roles.items() if role == READ}
    assert reads == READ_METHODS == {"Recommend", "RecommendBatch", "SimilarItems", "GetModelInfo"}
    assert roles["/mfrec.v1.Recommender/Train"] == ADMIN
    assert roles["/mfrec.v1.Recommender/GetTrainingJob"] == ADMIN


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.1.2.3", False),
        ("example.internal", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
