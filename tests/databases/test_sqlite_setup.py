import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest
from sqlalchemy import AsyncAdaptedQueuePool, NullPool, StaticPool, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from docs_src.databases import sqlite_setup as snippet
from tests.harness import app_client, client_for, run_concurrently, running, timed

pytestmark = pytest.mark.anyio
NOTE = {"text": "buy milk"}
BUSY = {"detail": "Database busy, try again"}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "notes.db"


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, path: Path):
    monkeypatch.setattr(snippet, "DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    monkeypatch.setattr(snippet, "BUSY_TIMEOUT", 1.0)
    return snippet.app


@pytest.fixture
async def other(path: Path) -> AsyncIterator[aiosqlite.Connection]:
    """Another connection to the same file, as another worker process would have.

    `isolation_level=None`: the test writes BEGIN and COMMIT itself.
    """
    async with aiosqlite.connect(path, isolation_level=None) as connection:
        yield connection


def has_wal_file(path: Path) -> bool:
    return Path(f"{path}-wal").exists()


async def value(connection: aiosqlite.Connection, sql: str) -> object:
    async with connection.execute(sql) as cursor:
        (result,) = await cursor.fetchone()
    return result


async def test_notes_are_written_and_listed_and_bad_bodies_refused(client):
    created = await client.post("/notes", json=NOTE)
    lines = await client.post("/notes", json={"text": "milk\n\teggs"})
    listed = await client.get("/notes")

    assert (created.status_code, created.json()) == (201, {"id": 1, **NOTE})
    assert lines.status_code == 201  # tab and newline are fine
    assert (listed.status_code, listed.json()[0]) == (200, {"id": 1, **NOTE})
    bad_bodies = [{"text": ""}, {"text": "x" * 501}, {}, {"text": None}]
    for bad in [*bad_bodies, {"text": "a\x00b"}, {"text": "\x1b[2J"}]:
        response = await client.post("/notes", json=bad)
        assert response.status_code == 422, bad
        assert all("input" not in error for error in response.json()["detail"])


# --8<-- [start:settings]
async def test_every_connection_is_configured_and_closed(app, path):
    async with snippet.lifespan(app) as state:
        engine: AsyncEngine = state["sessions"].kw["bind"]
        assert isinstance(engine.pool, AsyncAdaptedQueuePool)  # for a file: a pool
        async with engine.connect() as one, engine.connect() as two:
            timeouts = [await c.scalar(text("PRAGMA busy_timeout")) for c in (one, two)]
        assert has_wal_file(path)  # the write-ahead log, next to the database file

    assert timeouts == [1000, 1000]  # milliseconds, on each pooled connection
    assert not has_wal_file(path)  # all closed: the log went into the file
    async with aiosqlite.connect(path) as later:  # a connection the app did not set up
        assert await value(later, "PRAGMA journal_mode") == "wal"  # kept in the file
        assert await value(later, "PRAGMA busy_timeout") == 5000  # Python's default


# --8<-- [end:settings]
# --8<-- [start:locked]
async def test_a_writer_that_cannot_wait_gets_a_503(monkeypatch, app, other, caplog):
    monkeypatch.setattr(snippet, "BUSY_TIMEOUT", 0)
    async with app_client(app) as client:
        await other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        await other.execute("INSERT INTO notes (text) VALUES ('theirs')")
        busy, seconds = await timed(client.post("/notes", json=NOTE))
        await other.execute("COMMIT")
        later = await client.post("/notes", json=NOTE)

    assert (busy.status_code, busy.json()) == (503, BUSY)
    assert busy.headers["retry-after"] == "1"
    assert seconds < 0.5  # at once: no waiting
    assert "database is locked" in caplog.text  # the cause, for the operator
    assert "INSERT" not in caplog.text  # but not the statement and its values
    assert later.status_code == 201


async def test_other_database_errors_are_not_disguised_as_busy(app, other, caplog):
    async with running(app) as started:
        await other.execute("DROP TABLE notes")  # a bug, not a busy database
        async with client_for(started, raise_app_exceptions=False) as client:
            response = await client.post("/notes", json=NOTE)
        async with client_for(started) as client:
            with pytest.raises(OperationalError, match="no such table: notes"):
                await client.post("/notes", json=NOTE)  # reaches the server's log

    assert (response.status_code, response.text) == (500, "Internal Server Error")
    assert "retry-after" not in response.headers
    assert "busy" not in caplog.text


async def test_with_a_busy_timeout_the_writer_waits_its_turn(client, other):
    await other.execute("BEGIN IMMEDIATE")
    await other.execute("INSERT INTO notes (text) VALUES ('theirs')")
    post = asyncio.create_task(timed(client.post("/notes", json=NOTE)))
    await asyncio.sleep(0.1)
    assert not post.done()  # waiting for the lock, not failing
    await other.execute("COMMIT")
    response, seconds = await post

    assert response.status_code == 201
    assert 0.1 <= seconds < 1.0  # it waited for the commit, not for BUSY_TIMEOUT
    assert [n["text"] for n in (await client.get("/notes")).json()] == [
        "theirs",
        "buy milk",
    ]


@pytest.mark.parametrize(("busy_timeout", "all_created"), [(0, False), (1.0, True)])
async def test_one_writer_at_a_time(monkeypatch, app, busy_timeout, all_created):
    monkeypatch.setattr(snippet, "BUSY_TIMEOUT", busy_timeout)
    async with app_client(app) as client:
        results, seconds = await run_concurrently(
            10, lambda: timed(client.post("/notes", json=NOTE))
        )
        stored = (await client.get("/notes")).json()

    responses, durations = zip(*results, strict=True)
    assert sum(durations) > 1.5 * seconds  # they overlapped: they ran at once
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 503}
    assert (503 not in statuses) is all_created
    assert len(stored) == statuses.count(201)  # every 201 is a row, no more


# --8<-- [end:locked]
# --8<-- [start:wal]
async def test_readers_read_while_a_writer_holds_the_lock(monkeypatch, app, other):
    monkeypatch.setattr(snippet, "BUSY_TIMEOUT", 0)  # a blocked read would be a 503
    async with app_client(app) as client:
        await client.post("/notes", json=NOTE)
        await other.execute("BEGIN EXCLUSIVE")
        await other.execute("INSERT INTO notes (text) VALUES ('not yet')")
        listed = await client.get("/notes")
        await other.execute("ROLLBACK")

    assert (listed.status_code, listed.json()) == (200, [{"id": 1, **NOTE}])


async def test_without_wal_an_exclusive_writer_blocks_readers(tmp_path):
    path = tmp_path / "journal.db"  # SQLite's default: a rollback journal
    async with (
        aiosqlite.connect(path, isolation_level=None) as writer,
        aiosqlite.connect(path, timeout=0) as reader,
    ):
        await writer.execute("CREATE TABLE notes (text TEXT)")
        assert await value(writer, "PRAGMA journal_mode") == "delete"
        await writer.execute("BEGIN EXCLUSIVE")
        await writer.execute("INSERT INTO notes VALUES ('not yet')")
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            await reader.execute("SELECT count(*) FROM notes")
        await writer.execute("ROLLBACK")


# --8<-- [end:wal]
# --8<-- [start:memory]
async def test_each_connection_to_memory_is_a_new_empty_database():
    async with (
        aiosqlite.connect(":memory:") as one,
        aiosqlite.connect(":memory:") as two,
    ):
        await one.execute("CREATE TABLE notes (text TEXT)")
        with pytest.raises(sqlite3.OperationalError, match="no such table: notes"):
            await two.execute("SELECT * FROM notes")

    engine = create_async_engine("sqlite+aiosqlite://", poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE notes (text TEXT)"))
        with pytest.raises(OperationalError, match="no such table: notes"):
            async with engine.connect() as connection:  # a new connection
                await connection.execute(text("SELECT * FROM notes"))
    finally:
        await engine.dispose()


async def test_the_default_pool_for_memory_keeps_one_connection(monkeypatch):
    monkeypatch.setattr(snippet, "DATABASE_URL", "sqlite+aiosqlite://")
    async with app_client(snippet.app) as client:
        created = await client.post("/notes", json=NOTE)
        listed = await client.get("/notes")
    default = create_async_engine(snippet.DATABASE_URL).pool  # opens no connection

    assert isinstance(default, StaticPool)  # chosen by SQLAlchemy, not by the snippet
    assert created.status_code == 201
    assert listed.json() == [{"id": 1, **NOTE}]  # the table and the row survived


# --8<-- [end:memory]
# --8<-- [start:memory-pitfall]
async def overlapping_requests(url: str) -> tuple[list[type | None], list[int]]:
    """Request A writes, awaits, commits; request B writes meanwhile and fails.

    Returns the exception type each request ended with (None: none) and the rows
    left in the table afterwards.
    """
    engine = create_async_engine(url)
    sessions = async_sessionmaker(engine)
    a_wrote = asyncio.Event()

    async def request_a() -> None:
        async with sessions.begin() as session:
            await session.execute(text("INSERT INTO t VALUES (1)"))
            a_wrote.set()
            await asyncio.sleep(0.05)  # any await before the commit

    async def request_b() -> None:
        await a_wrote.wait()
        async with sessions.begin() as session:
            await session.execute(text("INSERT INTO t VALUES (2)"))
            raise RuntimeError("request B fails: roll back")

    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (x INTEGER)"))
        ended = await asyncio.gather(request_a(), request_b(), return_exceptions=True)
        async with engine.connect() as connection:
            rows = list(await connection.scalars(text("SELECT x FROM t")))
    finally:
        await engine.dispose()
    return [type(e) if e else None for e in ended], rows


async def test_one_shared_connection_is_one_shared_transaction():
    ended, rows = await overlapping_requests("sqlite+aiosqlite://")

    assert ended == [None, RuntimeError]  # A committed without an error...
    assert rows == []  # ...but B's rollback took A's row with it


async def test_a_shared_cache_does_not_wait_for_locks():
    url = "sqlite+aiosqlite:///file::memory:?cache=shared&uri=true"
    ended, rows = await overlapping_requests(url)

    assert ended == [None, OperationalError]  # "database table is locked", at once
    assert rows == [1]


# --8<-- [end:memory-pitfall]
