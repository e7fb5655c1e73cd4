import pytest
from fastapi import Depends, FastAPI
from pydantic import BaseModel
from pydantic.warnings import PydanticDeprecatedSince20
from sqlalchemy import event, insert, select
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docs_src.databases import batch_insert as snippet
from tests.databases.tutorial import tutorial_get_db
from tests.harness import client_for, timed

pytestmark = pytest.mark.anyio
User = snippet.User
ANN = {"name": "Ann", "email": "ann@example.com"}
BOB = {"name": "Bob", "email": "bob@example.com"}


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, sqlalchemy_url: str, engines):
    monkeypatch.setattr(snippet, "DATABASE_URL", sqlalchemy_url)
    return snippet.app


@pytest.fixture
def engine(running_app: ASGIApp, engines: list[AsyncEngine]) -> AsyncEngine:
    """The running app's engine."""
    return engines[0]


async def stored(url: str) -> list[tuple]:
    """Every row of `users`, read through a connection of its own."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            query = select(User.__table__).order_by(User.id)
            return [tuple(row) for row in await connection.execute(query)]
    finally:
        await engine.dispose()


def users(count: int, start: int = 0) -> list[dict[str, str]]:
    return [
        {"name": f"User {i}", "email": f"user{i}@example.com"}
        for i in range(start, start + count)
    ]


# --8<-- [start:created]
async def test_a_batch_is_stored_and_returned(client, sqlalchemy_url):
    response = await client.post("/users/batch", json=[ANN, BOB])

    assert response.status_code == 201
    assert response.json() == [
        {"id": 1, "name": "Ann", "email": "ann@example.com"},
        {"id": 2, "name": "Bob", "email": "bob@example.com"},
    ]  # in the order sent, and no password_hash
    assert await stored(sqlalchemy_url) == [
        (1, "Ann", "ann@example.com", None),
        (2, "Bob", "bob@example.com", None),
    ]


# --8<-- [end:created]
async def test_the_client_cannot_set_other_columns(client, sqlalchemy_url):
    sneaky = ANN | {"id": 99, "password_hash": "pbkdf2$chosen-by-client"}

    response = await client.post("/users/batch", json=[sneaky])

    assert response.json() == [{"id": 1, "name": "Ann", "email": "ann@example.com"}]
    assert await stored(sqlalchemy_url) == [(1, "Ann", "ann@example.com", None)]


# --8<-- [start:limits]
async def test_a_batch_holds_1_to_100_users(client, sqlalchemy_url):
    empty = await client.post("/users/batch", json=[])
    too_many = await client.post("/users/batch", json=users(101))
    bad_email = await client.post("/users/batch", json=[ANN, BOB | {"email": "bob"}])
    assert [empty.status_code, too_many.status_code, bad_email.status_code] == [
        422,
        422,
        422,
    ]
    assert empty.json()["detail"][0]["type"] == "too_short"
    assert too_many.json()["detail"][0]["type"] == "too_long"
    assert bad_email.json()["detail"][0]["loc"] == ["body", 1, "email"]
    assert "input" not in bad_email.json()["detail"][0]  # nothing is echoed
    assert await stored(sqlalchemy_url) == []

    full = await client.post("/users/batch", json=users(100))
    assert full.status_code == 201
    assert len(await stored(sqlalchemy_url)) == 100


# --8<-- [end:limits]
# --8<-- [start:all-or-nothing]
async def test_a_duplicate_email_stores_nothing(client, sqlalchemy_url):
    first = await client.post("/users/batch", json=[ANN])
    carol = {"name": "Carol", "email": "carol@example.com"}

    repeated = await client.post("/users/batch", json=[carol, BOB, BOB])
    taken = await client.post("/users/batch", json=[carol, BOB, ANN])

    assert first.status_code == 201
    assert repeated.status_code == taken.status_code == 409
    assert repeated.json() == taken.json() == {"detail": "Duplicate email"}
    assert await stored(sqlalchemy_url) == [(1, "Ann", "ann@example.com", None)]


# --8<-- [end:all-or-nothing]
# --8<-- [start:commit-first]
def traced(app: ASGIApp, log: list[str]) -> ASGIApp:
    """`app`, noting in `log` when the response starts."""

    async def app_with_trace(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_trace(message: Message) -> None:
            if message["type"] == "http.response.start":
                log.append(f"response {message['status']}")
            await send(message)

        await app(scope, receive, send_with_trace)

    return app_with_trace


def watch(engine: AsyncEngine, log: list[str]) -> None:
    """Note in `log` each commit, rollback, and connection back in the pool."""
    for name in ["commit", "rollback", "checkin"]:
        event.listen(engine.sync_engine, name, lambda *_, name=name: log.append(name))


async def test_the_commit_happens_before_the_response(running_app, engine):
    log: list[str] = []
    watch(engine, log)
    async with client_for(traced(running_app, log)) as client:
        await client.post("/users/batch", json=[ANN])
        await client.post("/users/batch", json=[ANN])

    assert log == [
        "commit",  # stored,
        "checkin",  # the connection is back in the pool,
        "response 201",  # and only then does the client hear about it
        "rollback",  # the duplicate: nothing stored,
        "checkin",
        "response 409",
    ]


# --8<-- [end:commit-first]
# --8<-- [start:speed]
async def commit_per_row(sessions: async_sessionmaker, rows: list[dict]) -> None:
    async with sessions() as session:
        for row in rows:
            session.add(User(**row))
            await session.commit()  # one transaction per row


async def flush_per_row(sessions: async_sessionmaker, rows: list[dict]) -> None:
    async with sessions() as session:
        for row in rows:
            session.add(User(**row))
            await session.flush()  # one INSERT per row, one transaction
        await session.commit()


async def test_one_insert_is_much_faster_than_one_per_row(client, engine):
    batch_times = []
    for start in (0, 100, 200):
        batch, seconds = await timed(
            client.post("/users/batch", json=users(100, start))
        )
        assert batch.status_code == 201
        batch_times.append(seconds)
    sessions = async_sessionmaker(engine)
    _, flush_time = await timed(flush_per_row(sessions, users(100, start=300)))
    _, commit_time = await timed(commit_per_row(sessions, users(100, start=400)))

    batch_time = min(batch_times)  # 100 users in one request
    assert flush_time > 2 * batch_time  # we measured 5x to 12x
    assert commit_time > 4 * batch_time  # we measured 14x to 45x


# --8<-- [end:speed]
# --8<-- [start:statements]
async def add_all_then_flush(sessions: async_sessionmaker, rows: list[dict]) -> None:
    async with sessions() as session:
        session.add_all([User(**row) for row in rows])
        await session.flush()
        await session.commit()


async def insert_in_order(sessions: async_sessionmaker, rows: list[dict]) -> None:
    async with sessions.begin() as session:
        statement = insert(User).returning(User.id, sort_by_parameter_order=True)
        await session.execute(statement, rows)


async def test_statements_sent_for_100_users(client, engine, backend):
    inserts: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def count(connection, cursor, statement, *args: object) -> None:
        if statement.startswith("INSERT"):
            inserts.append(statement)

    sessions = async_sessionmaker(engine)
    await client.post("/users/batch", json=users(100))
    by_the_route = len(inserts)
    await add_all_then_flush(sessions, users(100, start=100))
    by_add_all = len(inserts) - by_the_route
    await insert_in_order(sessions, users(100, start=200))
    in_order = len(inserts) - by_the_route - by_add_all

    assert by_the_route == 1
    assert by_add_all == in_order == {"postgresql": 1, "sqlite": 100}[backend]


# --8<-- [end:statements]
# --8<-- [start:seed]
async def test_what_the_tutorial_batch_does(engine):
    sessions = async_sessionmaker(engine)
    tutorial = FastAPI()

    class UserCreate(BaseModel):  # the tutorial leaves it undefined
        name: str
        email: str

    get_db = tutorial_get_db(sessions)

    @tutorial.post("/users/batch")
    async def create_users_batch(users: list[UserCreate], db=Depends(get_db)):  # noqa: B008
        user_objects = [User(**user.dict()) for user in users]  # as widely copied
        db.add_all(user_objects)
        await db.flush()
        return user_objects

    log: list[str] = []
    watch(engine, log)
    async with client_for(traced(tutorial, log), raise_app_exceptions=False) as client:
        with pytest.warns(PydanticDeprecatedSince20, match="use `model_dump` instead"):
            empty, created, duplicate = [
                await client.post("/users/batch", json=batch)
                for batch in ([], [ANN], [BOB, BOB])
            ]

    assert (empty.status_code, empty.json()) == (200, [])  # nothing to do: accepted
    assert created.status_code == 200  # not 201
    assert duplicate.status_code == 500  # not 409
    assert log == [
        "response 200",
        "response 200",  # the client is told it worked,
        "commit",  # before the commit has run
        "checkin",
        "rollback",  # the duplicate
        "checkin",
        "response 500",
    ]


# --8<-- [end:seed]
