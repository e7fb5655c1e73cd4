"""Fixtures shared by the Databases chapter's tests.

* `sqlalchemy_url`: every SQLAlchemy test runs twice, on SQLite (a file of its own,
  through aiosqlite) and on PostgreSQL (through asyncpg, when `DATABASE_URL` is set).
* `engines`: the SQLAlchemy engines the test module's snippet creates.
* `postgres_url`: a throwaway database of this run's own (named after its process
  id) on the server `DATABASE_URL` names, emptied after every test and dropped at
  the end of the run, so no test sees another's tables or rows, runs at the same
  time keep out of each other's way, and nothing is left on the server.
"""

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

THROWAWAY = "fastapi_async_patterns_test"


@pytest.fixture(scope="session")
async def _throwaway_database(database_url: str) -> AsyncIterator[URL]:
    server = make_url(database_url).set(drivername="postgresql")
    own = server.set(database=f"{THROWAWAY}_{os.getpid()}")
    admin = await asyncpg.connect(server.render_as_string(hide_password=False))
    try:
        await _drop_stale_databases(admin)
        await admin.execute(f'CREATE DATABASE "{own.database}"')
        yield own
        await admin.execute(f'DROP DATABASE "{own.database}" WITH (FORCE)')
    finally:
        await admin.close()


async def _drop_stale_databases(admin: asyncpg.Connection) -> None:
    """Drop what killed runs left behind: databases whose process has gone."""
    for row in await admin.fetch(
        "SELECT datname FROM pg_database WHERE datname LIKE $1", f"{THROWAWAY}_%"
    ):
        pid = int(row["datname"].rpartition("_")[2])
        try:
            os.kill(pid, 0)  # no error: that run is still going, leave it alone
        except ProcessLookupError:
            with contextlib.suppress(asyncpg.ObjectInUseError):
                await admin.execute(f'DROP DATABASE "{row["datname"]}"')
        except PermissionError:  # another user's run, still going
            pass


@pytest.fixture
async def postgres_url(_throwaway_database: URL) -> AsyncIterator[str]:
    """A plain `postgresql://` URL (asyncpg's form) of an empty database.

    Everything the test created is dropped afterwards, even when it failed.
    """
    url = _throwaway_database.render_as_string(hide_password=False)
    yield url
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await connection.close()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgres"))]
)
def sqlalchemy_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A SQLAlchemy async URL: an SQLite file, then the real PostgreSQL.

    The PostgreSQL run is skipped when `DATABASE_URL` is unset, and fails instead
    when the run requires postgres (CI).
    """
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    url = make_url(request.getfixturevalue("postgres_url"))
    return url.set(drivername="postgresql+asyncpg").render_as_string(
        hide_password=False
    )


@pytest.fixture
def backend(sqlalchemy_url: str) -> str:
    """`"sqlite"` or `"postgresql"`: which database this run of the test uses."""
    return make_url(sqlalchemy_url).get_backend_name()


@pytest.fixture
def engines(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> list[AsyncEngine]:
    """The engines the test module's `snippet` creates, for the test to watch."""
    created: list[AsyncEngine] = []

    def recording(*args: Any, **kwargs: Any) -> AsyncEngine:
        created.append(create_async_engine(*args, **kwargs))
        return created[-1]

    monkeypatch.setattr(request.module.snippet, "create_async_engine", recording)
    return created
