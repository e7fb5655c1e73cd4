import hashlib
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import insert, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import sessionmaker

from docs_src.databases import sqlalchemy_session as snippet
from tests.databases.tutorial import tutorial_get_db
from tests.harness import app_client, client_for, running

pytestmark = pytest.mark.anyio
ALICE = {"name": "Alice", "email": "alice@example.com", "password": "correct horse"}


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, sqlalchemy_url: str):
    monkeypatch.setattr(snippet, "DATABASE_URL", sqlalchemy_url)
    return snippet.app


async def stored_users(url: str) -> list[snippet.User]:
    """Every user row, read through an engine and a session of its own."""
    engine = create_async_engine(url)
    try:
        async with AsyncSession(engine) as session:
            return list(await session.scalars(select(snippet.User)))
    finally:
        await engine.dispose()


def verify(password: str, stored: str) -> bool:
    scheme, salt, digest = stored.split("$")
    again = hashlib.scrypt(
        password.encode(), salt=bytes.fromhex(salt), n=2**14, r=8, p=1
    )
    return scheme == "scrypt" and again.hex() == digest


# --8<-- [start:create]
async def test_a_new_user_is_committed_and_shown_without_its_hash(
    client, sqlalchemy_url
):
    created = await client.post("/users", json=ALICE)
    user_id = created.json()["id"]
    read = await client.get(f"/users/{user_id}")

    assert created.status_code == 201
    assert created.json() == {"id": user_id, "name": "Alice", "email": ALICE["email"]}
    assert (read.status_code, read.json()) == (200, created.json())
    (row,) = await stored_users(sqlalchemy_url)  # another engine, another session
    assert (row.id, row.email) == (user_id, ALICE["email"])
    assert ALICE["password"] not in row.password_hash
    assert verify(ALICE["password"], row.password_hash)


async def test_unknown_and_invalid_ids(client):
    missing = await client.get("/users/999")

    assert (missing.status_code, missing.json()) == (404, {"detail": "User not found"})
    for bad_id in ["abc", "0", "-1", str(2**31), str(2**63)]:
        response = await client.get(f"/users/{bad_id}")
        assert response.status_code == 422, bad_id
        assert response.json()["detail"][0]["loc"] == ["path", "user_id"]


async def test_the_password_is_hashed_in_a_worker_thread(monkeypatch, client):
    threads: list[int] = []
    real_hash = snippet.hash_password

    def recording(password: str) -> str:
        threads.append(threading.get_ident())
        return real_hash(password)

    monkeypatch.setattr(snippet, "hash_password", recording)
    response = await client.post("/users", json=ALICE)

    assert response.status_code == 201
    assert len(threads) == 1
    assert threads[0] != threading.get_ident()  # not the event loop's thread


# --8<-- [end:create]
async def test_without_the_checks_the_driver_fails(client, sqlalchemy_url, backend):
    """What the id's upper bound and the name's pattern keep from the driver."""
    big = 2**31 if backend == "postgresql" else 2**63
    engine = create_async_engine(sqlalchemy_url)
    try:
        async with AsyncSession(engine) as session:
            # asyncpg: "value out of int32 range"; sqlite3: "Python int too large"
            with pytest.raises((DBAPIError, OverflowError), match=r"int32|too large"):
                await session.get(snippet.User, big)
            if backend == "postgresql":  # PostgreSQL text cannot hold a NUL byte
                session.add(snippet.User(name="A\x00B", email="a@b", password_hash="x"))
                with pytest.raises(DBAPIError, match="0x00"):
                    await session.flush()
    finally:
        await engine.dispose()


async def test_invalid_bodies_are_422_and_never_echo_the_password(
    client, sqlalchemy_url
):
    bodies = [
        {**ALICE, "password": "hunter2"},
        {**ALICE, "email": "not an email"},
        {**ALICE, "email": "alice\x00@example.com"},
        {**ALICE, "name": ""},
        {**ALICE, "name": "A\x00B"},  # a NUL byte: PostgreSQL cannot store it
        {**ALICE, "name": "Alice\x1b[31m"},  # other control characters
        {"name": "Alice", "password": ALICE["password"]},
    ]
    for body in bodies:
        response = await client.post("/users", json=body)

        assert response.status_code == 422, body
        assert body["password"] not in response.text  # the one sent, never echoed
        assert all(
            set(error) == {"type", "loc", "msg"} for error in response.json()["detail"]
        )
    assert await stored_users(sqlalchemy_url) == []


# --8<-- [start:conflict]
async def test_a_duplicate_email_is_a_409_and_changes_nothing(client, sqlalchemy_url):
    first = await client.post("/users", json=ALICE)
    again = await client.post("/users", json={**ALICE, "name": "Mallory"})

    assert first.status_code == 201
    assert again.status_code == 409
    assert again.json() == {"detail": "Email already registered"}  # no SQL, no driver
    assert [user.name for user in await stored_users(sqlalchemy_url)] == ["Alice"]


async def test_an_error_after_the_insert_leaves_no_row(
    monkeypatch, app, sqlalchemy_url
):
    inserted: list[int | None] = []

    class Failing:  # the route's last step fails after the INSERT has run
        @staticmethod
        def model_validate(user: snippet.User) -> None:
            inserted.append(user.id)
            raise RuntimeError("boom")

    monkeypatch.setattr(snippet, "UserOut", Failing)
    async with (
        running(app) as started,
        client_for(started, raise_app_exceptions=False) as client,
    ):
        response = await client.post("/users", json=ALICE)

    assert response.status_code == 500
    assert inserted[0] is not None  # the database had assigned an id...
    assert await stored_users(sqlalchemy_url) == []  # ...and the row was rolled back


# --8<-- [end:conflict]
# --8<-- [start:lifecycle]
async def test_the_engine_lives_in_the_lifespan_and_is_disposed(
    monkeypatch, app, sqlalchemy_url
):
    created: list[AsyncEngine] = []
    disposed: list[AsyncEngine] = []
    real_create, real_dispose = snippet.create_async_engine, AsyncEngine.dispose

    def create_spy(url: str, **options: Any) -> AsyncEngine:
        created.append(real_create(url, **options))
        return created[-1]

    async def dispose_spy(engine: AsyncEngine, close: bool = True) -> None:
        disposed.append(engine)
        await real_dispose(engine, close)

    monkeypatch.setattr(snippet, "create_async_engine", create_spy)
    monkeypatch.setattr(AsyncEngine, "dispose", dispose_spy)
    assert not [v for v in vars(snippet).values() if isinstance(v, AsyncEngine)]

    async with app_client(app) as client:
        await client.post("/users", json=ALICE)
        await client.get("/users/1")
        assert disposed == []

    (engine,) = created  # one engine for every request, made at startup
    assert engine.url.render_as_string(hide_password=False) == sqlalchemy_url
    assert disposed == [engine]  # and disposed at shutdown
    assert not engine.echo


# --8<-- [end:lifecycle]
# --8<-- [start:tutorial]
def with_signup(app: FastAPI, db_dependency: Any) -> FastAPI:
    """Add the tutorial's kind of route: it adds a row and leaves the rest to commit."""

    @app.post("/users", status_code=201)
    async def create_user(email: str, db: db_dependency) -> dict[str, bool]:
        db.add(snippet.User(name="Alice", email=email, password_hash="x"))
        return {"created": True}  # no flush: the INSERT runs at commit

    return app


def tutorial_app(url: str, scope: Literal["function", "request"] | None) -> FastAPI:
    engine = create_async_engine(url)
    AsyncSessionLocal = sessionmaker(  # the 1.4 spelling of async_sessionmaker
        engine, class_=AsyncSession, expire_on_commit=False
    )

    get_db = tutorial_get_db(AsyncSessionLocal)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as connection:
            await connection.run_sync(snippet.Base.metadata.create_all)
        yield
        await engine.dispose()

    db = Annotated[AsyncSession, Depends(get_db, scope=scope)]
    return with_signup(FastAPI(lifespan=lifespan), db)


async def sign_up_twice(app: FastAPI) -> list[int]:
    """The status codes of two sign-ups with the same e-mail."""
    async with (
        running(app) as started,
        client_for(started, raise_app_exceptions=False) as client,
    ):
        return [
            (await client.post("/users", params={"email": ALICE["email"]})).status_code
            for _ in range(2)
        ]


async def test_the_tutorial_reports_success_for_a_rolled_back_write(sqlalchemy_url):
    statuses = await sign_up_twice(tutorial_app(sqlalchemy_url, scope=None))

    assert statuses == [201, 201]  # both "created"...
    assert len(await stored_users(sqlalchemy_url)) == 1  # ...the second rolled back


async def test_with_function_scope_the_failed_commit_is_the_answer(sqlalchemy_url):
    statuses = await sign_up_twice(tutorial_app(sqlalchemy_url, scope="function"))

    assert statuses == [201, 500]  # the commit failed before the response started
    assert len(await stored_users(sqlalchemy_url)) == 1


async def test_our_session_dependency_commits_before_the_response(app, sqlalchemy_url):
    ours = with_signup(FastAPI(lifespan=snippet.lifespan), snippet.Session)

    assert await sign_up_twice(ours) == [201, 409]
    assert len(await stored_users(sqlalchemy_url)) == 1


# --8<-- [end:tutorial]
# --8<-- [start:echo]
async def test_echo_writes_every_bound_parameter_to_the_log(
    monkeypatch, caplog, sqlalchemy_url
):
    engine_logger = logging.getLogger("sqlalchemy.engine.Engine")
    monkeypatch.setattr(engine_logger, "handlers", [])  # echo adds one; drop it after
    engine = create_async_engine(sqlalchemy_url, echo=True)  # as the tutorial does
    try:
        async with engine.begin() as connection:
            await connection.run_sync(snippet.Base.metadata.create_all)
            await connection.execute(
                insert(snippet.User),
                {
                    "name": "Alice",
                    "email": ALICE["email"],
                    "password_hash": "scrypt$s3cr3t",
                },
            )
    finally:
        await engine.dispose()

    assert "scrypt$s3cr3t" in caplog.text  # the hash and the e-mail, in the log
    assert ALICE["email"] in caplog.text


# --8<-- [end:echo]
