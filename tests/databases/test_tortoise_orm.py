import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import asyncpg
import pytest
from fastapi import FastAPI
from sqlalchemy import make_url
from tortoise import Tortoise, fields
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.contrib.fastapi import RegisterTortoise, register_tortoise
from tortoise.exceptions import ConfigurationError, OperationalError

from docs_src.databases import tortoise_orm as snippet
from tests.harness import app_client, client_for, running

pytestmark = pytest.mark.anyio
ANN = {"name": "Ann", "email": "ann@example.com"}


@pytest.fixture
def db_url(sqlalchemy_url: str) -> str:
    """The chapter's databases in Tortoise's spelling: an SQLite file, PostgreSQL."""
    url = make_url(sqlalchemy_url)
    if url.get_backend_name() == "sqlite":
        return f"sqlite://{url.database}"
    return url.set(drivername="postgres").render_as_string(hide_password=False)


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, db_url: str) -> FastAPI:
    monkeypatch.setattr(snippet, "DB_URL", db_url)
    return snippet.app


@pytest.fixture(autouse=True)
def no_tortoise_state_left_behind() -> Iterator[None]:
    """Tortoise keeps its state per process: each test starts clean and leaves no
    started ORM behind. The SQL it cached for another database must go too (see
    `test_the_sql_cache_outlives_the_database`)."""
    EXECUTOR_CACHE.clear()
    assert not Tortoise.is_inited()
    yield
    assert not Tortoise.is_inited()


async def stored_users(db_url: str) -> list[tuple[int, str, str]]:
    """The rows as a new connection of our own sees them, not through the ORM."""
    query = "SELECT id, name, email FROM tortoise_users ORDER BY id"
    if db_url.startswith("sqlite://"):
        with closing(sqlite3.connect(db_url.removeprefix("sqlite://"))) as db:
            return db.execute(query).fetchall()
    connection = await asyncpg.connect(db_url.replace("postgres://", "postgresql://"))
    try:
        return [tuple(row) for row in await connection.fetch(query)]
    finally:
        await connection.close()


def files_open(path: str) -> int:
    """How many file descriptors of this process point at `path` (Linux)."""
    targets = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            targets.append(fd.resolve())
        except OSError:  # closed while we looked
            continue
    return targets.count(Path(path).resolve())


async def open_connections(db_url: str) -> int:
    """How many connections to the database are open, other than this check's."""
    if db_url.startswith("sqlite://"):
        return files_open(db_url.removeprefix("sqlite://"))
    connection = await asyncpg.connect(db_url.replace("postgres://", "postgresql://"))
    try:
        return await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await connection.close()


# --8<-- [start:reads]
async def test_create_then_read_a_user(client, db_url):
    created = await client.post("/tortoise-users", json=ANN)
    found = await client.get("/tortoise-users/1")

    assert created.status_code == 201
    assert created.json() == {"id": 1, **ANN}  # no created_at: not in UserOut
    assert (found.status_code, found.json()) == (200, {"id": 1, **ANN})
    assert await stored_users(db_url) == [(1, "Ann", "ann@example.com")]
    missing = await client.get("/tortoise-users/999")
    assert (missing.status_code, missing.json()) == (404, {"detail": "User not found"})
    for bad_id in ["abc", "0", "-1", "1.5", str(2**31)]:  # 2**31: beyond INTEGER
        response = await client.get(f"/tortoise-users/{bad_id}")
        assert response.status_code == 422, bad_id


# --8<-- [end:reads]
# --8<-- [start:conflict]
async def test_a_duplicate_email_is_a_409_that_names_no_table(client, db_url):
    await client.post("/tortoise-users", json=ANN)
    duplicate = await client.post("/tortoise-users", json={**ANN, "name": "Other"})
    after = await client.post("/tortoise-users", json={**ANN, "email": "b@example.com"})

    assert duplicate.status_code == 409
    assert duplicate.json() == {"detail": "Email already registered"}
    assert after.status_code == 201  # the failed insert left nothing half-done
    assert [email for _, _, email in await stored_users(db_url)] == [
        "ann@example.com",
        "b@example.com",
    ]


# --8<-- [end:conflict]
async def test_bad_bodies_are_422_without_echoing_them(client, db_url):
    bodies = [
        {},
        {"name": "Ann"},
        {**ANN, "id": 7},  # the client does not choose the key
        {**ANN, "is_admin": True},  # nor any column the model does not accept
        {**ANN, "name": ""},
        {**ANN, "name": "x" * 101},
        {**ANN, "email": "not-an-email"},
        {**ANN, "name": "A\x00B"},  # a NUL byte: PostgreSQL cannot store it
        {**ANN, "name": "Ann\x1b[31m"},  # other control characters
        {**ANN, "email": "ann\x00@example.com"},
        [ANN],
        "Ann",
    ]
    for body in bodies:
        response = await client.post("/tortoise-users", json=body)

        assert response.status_code == 422, body
        assert all(set(e) == {"type", "loc", "msg"} for e in response.json()["detail"])
    assert await stored_users(db_url) == []


async def test_without_the_checks_the_driver_fails(client, backend):
    """What the id's upper bound and the name's pattern keep from the driver."""
    big = 2**31 if backend == "postgresql" else 2**63
    # asyncpg: "value out of int32 range"; sqlite3: "Python int too large"
    with pytest.raises((OperationalError, OverflowError), match=r"int32|too large"):
        await snippet.User.get_or_none(id=big)
    if backend == "postgresql":  # PostgreSQL text cannot hold a NUL byte
        with pytest.raises(OperationalError, match="0x00"):
            await snippet.User.create(name="A\x00B", email="a@b")


# --8<-- [start:lifecycle]
async def test_the_lifespan_closes_every_connection_and_can_start_again(
    monkeypatch, db_url
):
    monkeypatch.setattr(snippet, "DB_URL", db_url)
    for run in range(2):  # two starts in one process, as tests and reloads do
        async with app_client(snippet.app) as client:
            email = f"user{run}@example.com"
            created = await client.post("/tortoise-users", json={**ANN, "email": email})
            assert created.status_code == 201
            assert await open_connections(db_url) >= 1

        assert not Tortoise.is_inited()  # the global state is gone
        assert await open_connections(db_url) == 0  # and so are the connections
    assert len(await stored_users(db_url)) == 2


# --8<-- [end:lifecycle]
# --8<-- [start:one-per-process]
async def test_a_second_app_cannot_start_while_the_first_runs(app):
    other = FastAPI(
        lifespan=lambda app: RegisterTortoise(
            app, db_url="sqlite://:memory:", modules={"models": [snippet.__name__]}
        )
    )

    async with running(app) as started, client_for(started) as client:
        with pytest.raises(ConfigurationError, match="Global context fallback"):
            async with running(other):
                pass
        created = await client.post("/tortoise-users", json=ANN)  # still serving

    assert created.status_code == 201


# --8<-- [end:one-per-process]
# --8<-- [start:sql-cache]
@pytest.mark.service("postgres")
async def test_the_sql_cache_outlives_the_database(monkeypatch, tmp_path, postgres_url):
    sqlite = f"sqlite://{tmp_path / 'app.db'}"
    postgres = postgres_url.replace("postgresql://", "postgres://", 1)

    monkeypatch.setattr(snippet, "DB_URL", sqlite)
    async with app_client(snippet.app) as client:
        assert (await client.post("/tortoise-users", json=ANN)).status_code == 201
    cached_inserts = [sql for _, sql, *_ in EXECUTOR_CACHE.values()]
    assert cached_inserts == [
        'INSERT INTO "tortoise_users" ("name","email","created_at") VALUES (?,?,?)'
    ]
    monkeypatch.setattr(snippet, "DB_URL", postgres)  # same process, other database
    async with app_client(snippet.app) as client:
        with pytest.raises(OperationalError, match="syntax error"):
            await client.post("/tortoise-users", json=ANN)  # SQLite's INSERT

    EXECUTOR_CACHE.clear()
    async with app_client(snippet.app) as client:
        assert (await client.post("/tortoise-users", json=ANN)).status_code == 201


# --8<-- [end:sql-cache]
# --8<-- [start:seed]
async def test_the_tutorial_registration_never_starts():
    tutorial = FastAPI()
    register_tortoise(  # as the tutorial has it, PostgreSQL swapped for SQLite
        tutorial,
        db_url="sqlite://:memory:",
        modules={"models": ["app.models"]},  # the model is not there
        generate_schemas=True,
        add_exception_handlers=True,
    )

    with pytest.raises(ConfigurationError, match=r'Module "app\.models" not found'):
        async with running(tutorial):
            pass


async def test_the_tutorial_routes_with_the_module_path_fixed():
    tutorial = FastAPI()
    register_tortoise(
        tutorial,
        db_url="sqlite://:memory:",
        modules={"models": [snippet.__name__]},
        generate_schemas=True,
        add_exception_handlers=True,
    )

    @tutorial.get("/tortoise-users/{user_id}")
    async def get_tortoise_user(user_id: int):  # returns the ORM object itself
        return await snippet.User.get_or_none(id=user_id)

    @tutorial.post("/tortoise-users")
    async def create_tortoise_user(data: dict):  # written the same way
        return await snippet.User.create(**data)

    async with running(tutorial) as started, client_for(started) as client:
        await client.post("/tortoise-users", json=ANN)
        found = await client.get("/tortoise-users/1")
        duplicate = await client.post("/tortoise-users", json=ANN)

    assert "created_at" in found.json()  # every column goes out
    assert duplicate.status_code == 422  # from add_exception_handlers=True
    assert duplicate.json()["detail"][0]["msg"] == (
        "UNIQUE constraint failed: tortoise_users.email"  # the schema, to anyone
    )


def test_pk_true_is_deprecated():
    with pytest.warns(DeprecationWarning, match="`pk` is deprecated"):
        fields.IntField(pk=True)  # the tutorial's spelling


# --8<-- [end:seed]
