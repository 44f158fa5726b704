import pytest

from drillkit.errors import EnvironmentBroken
from drillkit.stack import engine


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def docker_engine():
    """Integration tests need the engine: `make test` starts it; a missing engine is an error."""
    try:
        return engine.client()
    except EnvironmentBroken as exc:
        pytest.exit(f"integration tests need a Docker engine: {exc}", returncode=3)
