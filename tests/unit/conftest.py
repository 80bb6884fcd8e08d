"""Shared fixtures for the unit tests."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from fleetd.config import ConfigError, Problem, Settings, load_config


class ConfigDir:
    """A temporary directory to write config files into and load them from (with an empty environment)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, text: str, name: str = "fleetd.yaml") -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    def load(self, text: str | None = None, *, environ: Mapping[str, str] | None = None) -> Settings:
        path = self.write(text) if text is not None else self.root / "fleetd.yaml"
        return load_config(path, environ={} if environ is None else environ)

    def problems(self, text: str | None = None, *, environ: Mapping[str, str] | None = None) -> list[Problem]:
        with pytest.raises(ConfigError) as info:
            self.load(text, environ=environ)
        assert info.value.problems, "ConfigError without problems"
        return info.value.problems

    def problem(self, text: str | None = None, *, environ: Mapping[str, str] | None = None) -> Problem:
        """The one problem the config has (fails if there are more)."""
        problems = self.problems(text, environ=environ)
        assert len(problems) == 1, "\n".join(map(str, problems))
        return problems[0]

    @property
    def main(self) -> str:
        """How the main config file is named in problems."""
        return str(self.root / "fleetd.yaml")


@pytest.fixture
def cfg(tmp_path: Path) -> ConfigDir:
    return ConfigDir(tmp_path)
