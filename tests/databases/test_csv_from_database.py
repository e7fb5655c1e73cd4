from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Annotated, Any

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI
from fastapi.responses import StreamingResponse
from sqlalchemy import Select, delete, event, insert, make_url, select, text
from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docs_src.databases import csv_from_database as snippet
from docs_src.streaming.csv_export import csv_chunks
from tests.harness import (
    client_for,
    latency_proxy,
    logged_exceptions,
    open_stream,
    running,
)
from tests.streaming.helpers import hang_up_while_sending, served, tutorial_export

pytestmark = pytest.mark.anyio
User = snippet.User


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch, sqlalchemy_url: str, engines) -> None:
    """The snippet on the test's database, in batches of 2."""
    monkeypatch.setattr(snippet, "DATABASE_URL", sqlalchemy_url)
    monkeypatch.setattr(snippet, "BATCH_SIZE", 2)


@pytest.fixture
def app(configured: None) -> ASGIApp:
    return snippet.app


@pytest.fixture
def engine(running_app: ASGIApp, engines: list[AsyncEngine]) -> AsyncEngine:
    """The running app's engine: `engine.pool.checkedout()` counts lent connections."""
    return engines[0]


@pytest.fixture
async def sql(running_app: ASGIApp, sqlalchemy_url: str):
    """Run a statement on the app's database through a connection of its own."""
    outside = create_async_engine(sqlalchemy_url, poolclass=NullPool)

    async def run(statement: Any, rows: list[dict] | None = None) -> None:
        async with outside.begin() as connection:
            await connection.execute(statement, rows)

    yield run
    await outside.dispose()


@pytest.fixture
def queries(engine: AsyncEngine) -> list[str]:
    """Every query the app sends from now on."""
    sent: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def record(connection, cursor, statement: str, *args: object) -> None:
        sent.append(statement)

    return sent


def users(count: int) -> list[dict[str, str]]:
    return [
        {"name": f"User {i}", "email": f"user{i}@example.com"}
        for i in range(1, count + 1)
    ]


def csv_lines(ids: range | list[int]) -> str:
    return "".join(f"{i},User {i},user{i}@example.com\r\n" for i in ids)


def users_after(after: int) -> Select:
    """The snippet's query: the next batch of users after id `after`."""
    query = select(User.id, User.name, User.email).where(User.id > after)
    return query.order_by(User.id).limit(snippet.BATCH_SIZE)


def after_each_chunk(app: ASGIApp, action: Callable[[int], Awaitable[None]]) -> ASGIApp:
    """`app`, running `await action(n)` once it has sent its n-th body chunk.

    The app waits for the action, as it waits for a client that reads slowly, so the
    action runs between two chunks: between two batches.
    """

    async def app_with_action(scope: Scope, receive: Receive, send: Send) -> None:
        sent = 0

        async def send_then_act(message: Message) -> None:
            nonlocal sent
            await send(message)
            if message["type"] == "http.response.body" and message.get("body"):
                sent += 1
                await action(sent)

        await app(scope, receive, send_then_act)

    return app_with_action


# --8<-- [start:export]
async def test_every_user_in_batches(client, sql, queries):
    await sql(insert(User), users(5))  # BATCH_SIZE is 2

    response = await client.get("/users.csv")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.text == "id,name,email\r\n" + csv_lines(range(1, 6))
    assert len(queries) == 3  # ids 1-2, 3-4, then 5: fewer than 2, the last batch


async def test_queries_per_export(client, sql, queries):
    counted = {}
    for total in [0, 1, 2, 3, 4, 9, 10]:
        await sql(delete(User))
        if total:
            await sql(insert(User), users(total))
        queries.clear()
        response = await client.get("/users.csv")
        assert response.text.count("\r\n") == 1 + total  # the header and every user
        counted[total] = len(queries)

    assert counted == {0: 1, 1: 1, 2: 2, 3: 2, 4: 3, 9: 5, 10: 6}  # total // 2 + 1


# --8<-- [end:export]
# --8<-- [start:closed]
async def test_no_connection_is_held_while_the_client_reads(running_app, engine, sql):
    await sql(insert(User), users(20))
    in_use = []

    async def count_connections(chunk: int) -> None:
        in_use.append(engine.pool.checkedout())

    watched = after_each_chunk(running_app, count_connections)
    async with open_stream(watched, "/users.csv") as stream:
        body = b"".join([chunk async for chunk in stream.aiter_bytes()])
    assert body.count(b"\r\n") == 21
    assert in_use == [0] * 11  # header + 10 batches: no connection lent meanwhile
    assert engine.pool.checkedout() == 0

    await hang_up_while_sending(watched, "/users.csv", chunks=3)  # stuck, then gone
    assert engine.pool.checkedout() == 0


async def test_a_client_that_leaves_stops_the_queries(
    running_app, engine, sql, queries, caplog
):
    await sql(insert(User), users(200))  # 100 batches
    discarded = []
    event.listen(engine.sync_engine, "invalidate", lambda *_: discarded.append(1))

    for _ in range(3):
        async with open_stream(running_app, "/users.csv") as stream:
            lines = stream.aiter_lines()
            assert [await anext(lines) for _ in range(3)] == [
                "id,name,email",
                "1,User 1,user1@example.com",
                "2,User 2,user2@example.com",
            ]
        # the app has finished here: open_stream waits for it

    assert len(queries) < 3 * 10  # of 3 * 100 batches: it stopped reading the table
    assert engine.pool.checkedout() == 0  # the connection went back to the pool
    assert discarded == []  # intact: no query was cut off halfway
    assert logged_exceptions(caplog, snippet.logger) == []  # leaving is no error


# --8<-- [end:closed]
# --8<-- [start:shield]
async def read_batch_unshielded(sessions, after: int) -> snippet.Batch:
    async with sessions() as session:
        return (await session.execute(users_after(after))).all()


async def read_batch_without_checkpoint(sessions, after: int) -> snippet.Batch:
    with anyio.CancelScope(shield=True):
        async with sessions() as session:
            return (await session.execute(users_after(after))).all()


@pytest.mark.parametrize(
    ("read_batch", "discarded", "queries_per_client"),
    [
        (snippet.read_batch, 0, {1, 2}),
        (read_batch_unshielded, 3, {1, 2}),
        (read_batch_without_checkpoint, 0, {6}),  # every batch: to the end
    ],
)
async def test_a_client_that_leaves_during_a_query(
    read_batch, discarded, queries_per_client, postgres_url, engines, monkeypatch
):
    monkeypatch.setattr(snippet, "read_batch", read_batch)
    monkeypatch.setattr(snippet, "BATCH_SIZE", 2)
    url = make_url(postgres_url).set(drivername="postgresql+asyncpg")
    address = url.render_as_string(hide_password=False)
    connections_discarded, queries, counts = [], [], set()
    async with latency_proxy(address, delay=0.005) as slow:  # 10 ms per round trip
        monkeypatch.setattr(snippet, "DATABASE_URL", slow)
        async with running(snippet.app) as started:
            engine = engines[0]
            async with engine.begin() as connection:
                await connection.execute(insert(User), users(10))  # 5 batches
            on = engine.sync_engine
            event.listen(on, "invalidate", lambda *_: connections_discarded.append(1))
            event.listen(on, "before_cursor_execute", lambda *_: queries.append(1))
            for _ in range(3):
                async with open_stream(started, "/users.csv") as stream:
                    await anext(stream.aiter_lines())  # the header, then leave
                counts.add(len(queries))
                queries.clear()

            assert engine.pool.checkedout() == 0

    assert counts <= queries_per_client
    assert len(connections_discarded) == discarded


# --8<-- [end:shield]
# --8<-- [start:lifetimes]
def export_with(design: str) -> tuple[FastAPI, list[AsyncIterator]]:
    """The export with one session for the whole download, opened three ways.

    Returns the app, and a list of the sessions and generators it creates, which
    the test closes at the end.
    """
    export = FastAPI(lifespan=snippet.lifespan)
    created: list[AsyncIterator] = []

    async def rows(session: AsyncSession) -> AsyncIterator[snippet.Batch]:
        last = 0
        while batch := (await session.execute(users_after(last))).all():
            yield batch
            last = batch[-1].id

    async def get_session(sessions: snippet.Sessions) -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session

    async def in_generator(sessions: snippet.Sessions) -> AsyncIterator[snippet.Batch]:
        async with sessions() as session:
            async for batch in rows(session):
                yield batch

    def respond(batches: AsyncIterator[snippet.Batch]) -> StreamingResponse:
        created.append(batches)
        return StreamingResponse(csv_chunks(batches), media_type="text/csv")

    if design == "session opened in the generator":

        @export.get("/users.csv")
        async def export_users(sessions: snippet.Sessions) -> StreamingResponse:
            return respond(in_generator(sessions))

    else:
        scope = "function" if design == 'Depends(scope="function")' else "request"
        Session = Annotated[AsyncSession, Depends(get_session, scope=scope)]

        @export.get("/users.csv")
        async def export_users(session: Session) -> StreamingResponse:
            created.append(session)
            return respond(rows(session))

    return export, created


@pytest.mark.parametrize(
    ("design", "while_reading", "after_the_download", "after_leaving"),
    [
        ("Depends(get_session)", 1, 0, 0),  # request scope, the default
        ('Depends(scope="function")', 1, 1, 2),  # closed, then reopened: a leak
        ("session opened in the generator", 1, 0, 1),  # until garbage collection
    ],
)
async def test_one_session_for_the_whole_download(
    design, while_reading, after_the_download, after_leaving, configured, engines
):
    export, created = export_with(design)
    in_use = []

    async def count_connections(chunk: int) -> None:
        in_use.append(engine.pool.checkedout())

    async with running(export) as started:
        engine = engines[0]
        async with engine.begin() as connection:
            await connection.execute(insert(User), users(20))
        watched = after_each_chunk(started, count_connections)
        async with open_stream(watched, "/users.csv") as stream:
            body = b"".join([chunk async for chunk in stream.aiter_bytes()])
        reading, finished = max(in_use), engine.pool.checkedout()
        await hang_up_while_sending(watched, "/users.csv", chunks=3)
        left = engine.pool.checkedout()

        for leftover in created:  # close what only the garbage collector would
            if isinstance(leftover, AsyncSession):
                await leftover.close()
            else:
                await leftover.aclose()

    assert body.count(b"\r\n") == 21  # the download itself works in all three
    assert (reading, finished, left) == (
        while_reading,
        after_the_download,
        after_leaving,
    )


# --8<-- [end:lifetimes]
# --8<-- [start:keyset]
async def test_a_row_deleted_between_batches_skips_nothing(running_app, sql):
    await sql(insert(User), users(5))

    async def delete_user_1(chunk: int) -> None:
        if chunk == 2:  # the header, then ids 1 and 2 have left
            await sql(delete(User).where(User.id == 1))

    async with open_stream(
        after_each_chunk(running_app, delete_user_1), "/users.csv"
    ) as stream:
        body = b"".join([chunk async for chunk in stream.aiter_bytes()]).decode()

    assert body == "id,name,email\r\n" + csv_lines([1, 2, 3, 4, 5])


# --8<-- [end:keyset]
# --8<-- [start:formulas]
async def test_formulas_are_neutralised(client, sql):
    await sql(
        insert(User),
        [
            {"name": '=HYPERLINK("http://evil.invalid")', "email": "a@example.com"},
            {"name": "@SUM(A1:A9)", "email": "-b@example.com"},
        ],
    )

    response = await client.get("/users.csv")

    assert response.text == (
        "id,name,email\r\n"
        '1,"\'=HYPERLINK(""http://evil.invalid"")",a@example.com\r\n'
        "2,'@SUM(A1:A9),'-b@example.com\r\n"
    )


# --8<-- [end:formulas]
# --8<-- [start:errors]
async def test_a_database_error_before_the_first_byte_is_a_503(
    client, sql, backend, caplog
):
    await sql(text("DROP TABLE users"))

    response = await client.get("/users.csv")

    assert response.status_code == 503
    assert response.json() == {"detail": "Database unavailable"}
    error = {"postgresql": ProgrammingError, "sqlite": OperationalError}[backend]
    assert logged_exceptions(caplog, snippet.logger) == [error]


async def test_a_database_error_mid_stream_cuts_the_download(
    running_app, sql, backend, caplog
):
    await sql(insert(User), users(5))

    async def drop_the_table(chunk: int) -> None:
        if chunk == 2:
            await sql(text("DROP TABLE users"))

    failing = after_each_chunk(running_app, drop_the_table)
    received, error = [], None
    async with served(failing, caplog) as url, httpx.AsyncClient(base_url=url) as http:
        try:
            async with http.stream("GET", "/users.csv") as response:
                async for chunk in response.aiter_text():
                    received.append(chunk)
        except httpx.HTTPError as exc:
            error = exc

    assert response.status_code == 200  # sent with the header, before the error
    assert "".join(received) == "id,name,email\r\n" + csv_lines([1, 2])
    assert isinstance(error, httpx.RemoteProtocolError)  # the body was cut off
    failure = {"postgresql": ProgrammingError, "sqlite": OperationalError}[backend]
    assert logged_exceptions(caplog, snippet.logger) == [failure]
    assert [(r.name, r.message) for r in caplog.records] == [
        (snippet.logger.name, "export failed after id 2"),
        ("uvicorn.error", "Exception in ASGI application\n"),
    ]


async def test_a_database_server_that_went_away_is_a_503(
    postgres_url, monkeypatch, engines, caplog
):
    url = make_url(postgres_url).set(drivername="postgresql+asyncpg")
    server = AsyncExitStack()
    async with server:
        address = url.render_as_string(hide_password=False)
        proxied = await server.enter_async_context(latency_proxy(address, delay=0))
        monkeypatch.setattr(snippet, "DATABASE_URL", proxied)
        async with running(snippet.app) as started, client_for(started) as client:
            before = await client.get("/users.csv")
            await server.aclose()  # the server is gone: connections drop, none open
            after = [await client.get("/users.csv") for _ in range(2)]

    assert before.status_code == 200
    assert [r.status_code for r in after] == [503, 503]
    assert logged_exceptions(caplog, snippet.logger) == [
        InterfaceError,  # the connection the pool kept is dead
        ConnectionRefusedError,  # and a new one is refused
    ]


# --8<-- [end:errors]
# --8<-- [start:seed]
async def test_the_tutorial_export_skips_a_row(engine, sql):
    await sql(insert(User), users(150))
    sessions = async_sessionmaker(engine)

    async def fetch_users_batch(offset: int, limit: int) -> Sequence[User]:
        async with sessions() as session:  # the tutorial leaves it undefined
            query = select(User).order_by(User.id).offset(offset).limit(limit)
            return (await session.scalars(query)).all()

    tutorial = tutorial_export(fetch_users_batch)

    async def delete_user_1(chunk: int) -> None:
        if chunk == 101:  # the header, then rows 1 to 100, one chunk each
            await sql(delete(User).where(User.id == 1))

    deleting = after_each_chunk(tutorial, delete_user_1)
    async with open_stream(deleting, "/export/users") as stream:
        lines = [line async for line in stream.aiter_lines()]

    exported = [int(line.split(",")[0]) for line in lines[1:]]
    assert exported == [*range(1, 101), *range(102, 151)]  # no 101


# --8<-- [end:seed]
