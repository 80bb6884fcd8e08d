"""Hostile and broken config files: every problem is file:line: field: message, never a hang or a traceback."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from fleetd.config import AnswerLimits

if TYPE_CHECKING:
    from conftest import ConfigDir

MiB = 1024 * 1024


def test_max_answer_sizes(cfg: ConfigDir) -> None:
    settings = cfg.load("poll:\n  max_answer: {containers: 128MiB, images: 1GB, info: 65536, other: 1.5MiB}\n")
    assert settings.poll.max_answer == AnswerLimits(
        containers=128 * MiB, images=10**9, info=65536, other=int(1.5 * MiB)
    )
    assert cfg.load("{}\n").poll.max_answer == AnswerLimits(
        containers=64 * MiB, images=32 * MiB, info=4 * MiB, other=16 * MiB
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lots", "invalid size 'lots'"),
        ("12 parsecs", "invalid size '12 parsecs'"),
        ("1KiB", "must be between 64KiB and 4GiB, got '1KiB'"),
        ("5GiB", "must be between 64KiB and 4GiB, got '5GiB'"),
        ("[1]", "expected a size such as '64MiB', got a list"),
        ("true", "expected a size, got True"),
    ],
)
def test_bad_max_answer_is_named(cfg: ConfigDir, value: str, message: str) -> None:
    problem = cfg.problem(f"poll:\n  max_answer:\n    containers: {value}\n")
    assert (problem.line, problem.field) == (3, "poll.max_answer.containers")
    assert message in problem.message
