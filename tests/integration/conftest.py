"""Fixtures of the integration tests: real servers, stopped or killed after."""

import pytest

from tests.server import ServerProcess, configured_venue


@pytest.fixture
def start(tmp_path):
    """Starts servers (`sections`: the demo venue with other [limits],
    [risk]... values); whatever a failing test left running is killed."""
    started = []

    def start_server(*args: str, sections: dict | None = None) -> ServerProcess:
        data = tmp_path / f"venue{len(started)}"
        if sections is not None:
            args = (*configured_venue(data, sections), *args)
        started.append(ServerProcess(data, *args))
        return started[-1]

    yield start_server
    for server in started:
        if server.process.poll() is None:
            server.kill()


@pytest.fixture
def server(start):
    venue = start()
    yield venue
    assert venue.stop() == 0
