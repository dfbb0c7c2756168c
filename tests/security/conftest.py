"""Hostile-tenant tests: each one reproduces something an agent or API caller could do to
escape its sandbox, reach another tenant, starve the host or crash the controller."""

from __future__ import annotations

from tests.sandbox.conftest import backend

__all__ = ["backend"]
