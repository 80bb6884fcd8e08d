"""API roles, lowest first: a module of its own so any settings module can name them."""

from __future__ import annotations

from typing import Literal

__all__ = ["Role"]

Role = Literal["viewer", "operator", "admin"]
