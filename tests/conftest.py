"""Fixtures shared by every test; the helpers themselves live in tests/harness.py."""

import os
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from starlette.types import ASGIApp

from tests.harness import FakeUpstream, client_for, running, serve

SERVICES = {"postgres": "DATABASE_URL", "redis": "REDIS_URL", "mongodb": "MONGODB_URL"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-services",
        default=os.environ.get("REQUIRE_SERVICES", ""),
        help="comma-separated services (postgres,redis,mongodb) whose tests must run",
    )


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def app() -> ASGIApp:
    """Each test module overrides this with its snippet's app, delays shrunk."""
    msg = "define an `app` fixture in the test module"
    raise NotImplementedError(msg)


@pytest.fixture
async def running_app(app: ASGIApp) -> AsyncIterator[ASGIApp]:
    """The module's app with its lifespan started, and shut down after the test."""
    async with running(app) as started:
        yield started


@pytest.fixture
async def client(running_app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP and WebSocket client for the running app, in process."""
    async with client_for(running_app) as client:
        yield client


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    """A fake upstream service on 127.0.0.1; its `url` is set while the test runs."""
    fake = FakeUpstream()
    async with serve(fake.app) as url:
        fake.url = url
        yield fake


@pytest.fixture
def unreachable_url() -> Iterator[str]:
    """An address on 127.0.0.1 that refuses connections (bound, never listening)."""
    with socket.socket() as closed_port:
        closed_port.bind(("127.0.0.1", 0))
        host, port = closed_port.getsockname()
        yield f"http://{host}:{port}"


def _service_url(request: pytest.FixtureRequest, service: str) -> str:
    variable = SERVICES[service]
    if url := os.environ.get(variable):
        return url
    required = request.config.getoption("--require-services").split(",")
    if service in required:
        pytest.fail(f"{variable} is not set, but this run requires {service}")
    pytest.skip(f"set {variable} to run this test against a real {service}")


@pytest.fixture(scope="session")
def database_url(request: pytest.FixtureRequest) -> str:
    """`DATABASE_URL` (a PostgreSQL URL); the test is skipped when it is unset."""
    return _service_url(request, "postgres")


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    """`REDIS_URL`; the test is skipped when it is unset."""
    return _service_url(request, "redis")


@pytest.fixture(scope="session")
def mongodb_url(request: pytest.FixtureRequest) -> str:
    """`MONGODB_URL`; the test is skipped when it is unset."""
    return _service_url(request, "mongodb")


def pytest_report_header() -> list[str]:
    """Print the versions this run tests the snippets against."""
    from importlib.metadata import version

    names = ["fastapi", "starlette", "pydantic", "anyio", "httpx", "uvicorn", "mkdocs"]
    databases = ["sqlalchemy", "aiosqlite", "asyncpg", "tortoise-orm", "pymongo"]
    return [
        "tested on: " + ", ".join(f"{n} {version(n)}" for n in names),
        "databases: " + ", ".join(f"{n} {version(n)}" for n in databases),
    ]
