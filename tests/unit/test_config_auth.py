"""auth: tokens by hash or file, roles, and no token ever shown in a message."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import pytest

from fleetd.config import AuthSettings, ConfigError, Problem, TokenSettings

if TYPE_CHECKING:
    from conftest import ConfigDir

SECRET = "s3cr3t-t0ken-value"
SECRET_SHA = hashlib.sha256(SECRET.encode()).hexdigest()
OTHER_SHA = hashlib.sha256(b"another-token").hexdigest()


def located(problem: Problem) -> tuple[str, int, str]:
    return problem.file, problem.line, problem.field


def token_config(*entries: str) -> str:
    return "auth:\n  tokens:\n" + "".join(f"    - {entry}\n" for entry in entries)


def test_auth_defaults(cfg: ConfigDir) -> None:
    assert cfg.load("auth: {}\n").auth == AuthSettings(tokens=(), anonymous_read=False, protect_health=False)


def test_tokens_by_hash_and_by_file(cfg: ConfigDir) -> None:
    cfg.write(f"\n  {SECRET}  \n", "secrets/ops.token")
    settings = cfg.load(
        f"""
        auth:
          anonymous_read: true
          protect_health: true
          tokens:
            - {{name: ci-bot, token_sha256: {OTHER_SHA.upper()}, role: operator}}
            - {{name: ops, token_file: secrets/ops.token, role: admin}}
            - {{name: dash, token_sha256: '{"ab" * 32}', role: Viewer}}
        """
    )
    assert settings.auth == AuthSettings(
        tokens=(
            TokenSettings(name="ci-bot", token_sha256=OTHER_SHA, role="operator"),
            TokenSettings(name="ops", token_sha256=SECRET_SHA, role="admin"),
            TokenSettings(name="dash", token_sha256="ab" * 32, role="viewer"),
        ),
        anonymous_read=True,
        protect_health=True,
    )


def test_absolute_token_file(cfg: ConfigDir) -> None:
    path = cfg.write(SECRET, "ops.token")
    [token] = cfg.load(token_config(f"{{name: ops, token_file: '{path}', role: admin}}")).auth.tokens
    assert token.token_sha256 == SECRET_SHA


def test_duplicate_token_name(cfg: ConfigDir) -> None:
    problem = cfg.problem(
        token_config(
            f"{{name: ci, token_sha256: {SECRET_SHA}, role: viewer}}",
            f"{{name: ci, token_sha256: {OTHER_SHA}, role: viewer}}",
        )
    )
    assert located(problem) == (cfg.main, 4, "auth.tokens[1].name")
    assert problem.message == "duplicate token name 'ci' (first at line 3)"


@pytest.mark.parametrize(
    ("role", "message"),
    [
        ("boss", "'boss' is not one of viewer, operator, admin"),
        ("admn", "'admn' is not one of viewer, operator, admin; did you mean 'admin'?"),
        ("1", "expected a string, got an integer"),  # values in token entries are never shown
    ],
)
def test_bad_role(cfg: ConfigDir, role: str, message: str) -> None:
    problem = cfg.problem(token_config(f"{{name: ci, token_sha256: {SECRET_SHA}, role: {role}}}"))
    assert located(problem) == (cfg.main, 3, "auth.tokens[0].role")
    assert problem.message == message


def test_missing_role_and_name(cfg: ConfigDir) -> None:
    problems = cfg.problems(token_config(f"{{token_sha256: {SECRET_SHA}}}"))
    assert [(located(p), p.message) for p in problems] == [
        ((cfg.main, 3, "auth.tokens[0].name"), "missing required key 'name'"),
        ((cfg.main, 3, "auth.tokens[0].role"), "missing required key 'role'"),
    ]


def test_both_hash_and_file(cfg: ConfigDir) -> None:
    cfg.write(SECRET, "ops.token")
    problem = cfg.problem(
        "auth:\n  tokens:\n    - name: ops\n      role: admin\n"
        f"      token_sha256: {SECRET_SHA}\n      token_file: ops.token\n"
    )
    assert located(problem) == (cfg.main, 6, "auth.tokens[0].token_file")
    assert problem.message == "give either token_sha256 or token_file, not both"


def test_neither_hash_nor_file(cfg: ConfigDir) -> None:
    problem = cfg.problem(token_config("{name: ops, role: admin}"))
    assert located(problem) == (cfg.main, 3, "auth.tokens[0].token_sha256")
    assert problem.message == "missing token: give token_sha256 (64 hex digits) or token_file"


@pytest.mark.parametrize("value", [SECRET, SECRET_SHA[:-1], SECRET_SHA + "0", "g" * 64])
def test_bad_hash_is_not_echoed(cfg: ConfigDir, value: str) -> None:
    problem = cfg.problem(token_config(f"{{name: ops, role: admin, token_sha256: '{value}'}}"))
    assert located(problem) == (cfg.main, 3, "auth.tokens[0].token_sha256")
    assert problem.message == "must be 64 hexadecimal digits: the SHA-256 of the token"


def test_non_string_hash_is_not_echoed(cfg: ConfigDir) -> None:
    problem = cfg.problem(token_config("{name: ops, role: admin, token_sha256: 123456789}"))
    assert located(problem) == (cfg.main, 3, "auth.tokens[0].token_sha256")
    assert problem.message == "expected a string, got an integer"


def test_token_entry_given_as_a_bare_string_is_not_echoed(cfg: ConfigDir) -> None:
    problem = cfg.problem(token_config(SECRET))
    assert located(problem) == (cfg.main, 3, "auth.tokens[0]")
    assert problem.message == "expected a mapping, got a string"


def test_missing_token_file(cfg: ConfigDir) -> None:
    problem = cfg.problem(token_config("{name: ops, role: admin, token_file: ops.token}"))
    assert located(problem) == (cfg.main, 3, "auth.tokens[0].token_file")
    assert problem.message == f"cannot read {cfg.root / 'ops.token'}: No such file or directory"


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"  \n\n", "is empty"), (b"\xff\xfe" + SECRET.encode(), "is not valid UTF-8 text")],
)
def test_unusable_token_file(cfg: ConfigDir, content: bytes, message: str) -> None:
    (cfg.root / "ops.token").write_bytes(content)
    problem = cfg.problem(token_config("{name: ops, role: admin, token_file: ops.token}"))
    assert located(problem) == (cfg.main, 3, "auth.tokens[0].token_file")
    assert problem.message == f"{cfg.root / 'ops.token'} {message}"


def test_same_token_twice(cfg: ConfigDir) -> None:
    cfg.write(SECRET, "ops.token")
    problem = cfg.problem(
        token_config(
            f"{{name: ci, role: viewer, token_sha256: {SECRET_SHA}}}",
            "{name: ops, role: admin, token_file: ops.token}",
        )
    )
    assert located(problem) == (cfg.main, 4, "auth.tokens[1].token_file")
    assert problem.message == "same token as 'ci'; every token must be different"


def test_no_message_ever_contains_a_token(cfg: ConfigDir) -> None:
    cfg.write(SECRET, "ops.token")
    cfg.write(SECRET, "dup.token")
    with pytest.raises(ConfigError) as info:
        cfg.load(
            token_config(
                SECRET,
                f"{{name: a, role: admin, token_sha256: {SECRET}}}",
                f"{{name: b, role: admin, token_sha256: {SECRET_SHA}, token_file: ops.token}}",
                "{name: c, role: admin, token_file: ops.token}",
                "{name: d, role: admin, token_file: dup.token}",
                "{name: e, role: boss, token_file: nothere.token}",
            )
        )
    text = str(info.value)
    assert len(info.value.problems) == 6
    assert SECRET not in text
    assert SECRET_SHA not in text


def test_auth_shape(cfg: ConfigDir) -> None:
    problems = cfg.problems("auth:\n  tokens: {ci: x}\n  anonymous_read: 1\n  protect: true\n")
    assert [located(p) for p in problems] == [
        (cfg.main, 2, "auth.tokens"),
        (cfg.main, 3, "auth.anonymous_read"),
        (cfg.main, 4, "auth.protect"),
    ]
    assert problems[0].message == "expected a list, got a mapping"
    assert problems[1].message == "expected true or false, got an integer (1)"
    assert problems[2].message.startswith("unknown key 'protect'; did you mean 'protect_health'?")
