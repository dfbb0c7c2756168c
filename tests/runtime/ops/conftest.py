"""The live-server fixture of the API tests, shared here (not redefined)."""

from tests.runtime.api.conftest import start_server

__all__ = ["start_server"]
