"""The live-server and scripted-model fixtures of the API tests, shared here (not redefined)."""

from tests.runtime.api.conftest import script, start_server

__all__ = ["script", "start_server"]
