import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from statistics import median
from typing import Annotated, TypeVar

import pytest
from fastapi import Depends, FastAPI, Request
from sqlalchemy import Select, event, func, insert, make_url, select
from sqlalchemy.exc import IllegalStateChangeError, InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from docs_src.databases import parallel_queries as snippet
from docs_src.databases.parallel_queries import Counts, Order, User
from tests.databases.rows import create_rows
from tests.databases.tutorial import tutorial_get_db
from tests.harness import (
    app_client,
    client_for,
    latency_proxy,
    run_concurrently,
    running,
    timed,
)

pytestmark = pytest.mark.anyio
T = TypeVar("T")
USERS = ["ada", "bob", "cy"]
ORDERS = [(1, 1250), (2, 900), (1, 4000)]  # (user_id, total_cents)
DASHBOARD = {
    "users": [{"id": 1, "name": "ada"}, {"id": 2, "name": "bob"}],
    "orders": [
        {"id": 1, "user_id": 1, "total_cents": 1250},
        {"id": 2, "user_id": 2, "total_cents": 900},
    ],
    "counts": {"users": 3, "orders": 3},
}


async def seed(url: str) -> None:
    """Create the tables and the rows above, through a connection of our own."""
    await create_rows(
        url,
        snippet.Base.metadata,
        (User, [{"name": n, "password_hash": "s3cret"} for n in USERS]),
        (Order, [{"user_id": u, "total_cents": t} for u, t in ORDERS]),
    )


class SessionSpy:
    """Wraps `get_sessions`: records every session the app opens, the SQL its
    engine sends, and the most connections it had checked out of its pool at once."""

    def __init__(self) -> None:
        self.sessions: list[AsyncSession] = []
        self.statements: list[str] = []
        self.factory: async_sessionmaker[AsyncSession] | None = None
        self.in_use = self.max_in_use = 0

    def _checkout(self, *_: object) -> None:
        self.in_use += 1
        self.max_in_use = max(self.max_in_use, self.in_use)

    def _checkin(self, *_: object) -> None:
        self.in_use -= 1

    def _sent(self, connection: object, cursor: object, statement: str, *_) -> None:
        self.statements.append(statement)

    def watch(self, factory: async_sessionmaker[AsyncSession]) -> None:
        self.factory = factory
        engine = factory.kw["bind"].sync_engine
        event.listen(engine, "checkout", self._checkout)
        event.listen(engine, "checkin", self._checkin)
        event.listen(engine, "before_cursor_execute", self._sent)

    async def __call__(self, request: Request) -> async_sessionmaker[AsyncSession]:
        factory = await snippet.get_sessions(request)
        if self.factory is None:
            self.watch(factory)

        def recording() -> AsyncSession:
            self.sessions.append(factory())
            return self.sessions[-1]

        return recording


@pytest.fixture(autouse=True)
def two_of_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snippet, "LIMIT", 2)


@pytest.fixture
async def app(monkeypatch: pytest.MonkeyPatch, sqlalchemy_url: str) -> FastAPI:
    await seed(sqlalchemy_url)
    monkeypatch.setattr(snippet, "DATABASE_URL", sqlalchemy_url)
    return snippet.app


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> SessionSpy:
    spy = SessionSpy()
    monkeypatch.setitem(snippet.app.dependency_overrides, snippet.get_sessions, spy)
    return spy


async def sequential(sessions: async_sessionmaker[AsyncSession]) -> None:
    """The same three queries, one after the other, in one session."""
    async with sessions() as session:
        await snippet.read_users(session)
        await snippet.read_orders(session)
        await snippet.read_counts(session)


async def warm_up(spy: SessionSpy) -> None:
    """Leave three connections in the pool, each having run the three queries.

    Three sessions at once hold three connections; a query that finds one idle
    in the pool does not wait for a new one to open.
    """
    await asyncio.gather(*(sequential(spy.factory) for _ in range(3)))
    spy.max_in_use = 0


# --8<-- [start:body]
async def test_the_dashboard(client, spy):
    response = await client.get("/dashboard")

    assert response.status_code == 200
    assert response.json() == DASHBOARD  # no password_hash anywhere
    users_query = next(s for s in spy.statements if "FROM users" in s)
    assert users_query.startswith("SELECT users.id, users.name \nFROM users")
    assert not any("password_hash" in s for s in spy.statements)


async def test_twenty_requests_at_once_never_fail(monkeypatch, app, spy):
    monkeypatch.setattr(snippet, "POOL_SIZE", 6)  # fewer than 20 x 3 queries

    async with app_client(app) as client:
        responses, _ = await run_concurrently(20, lambda: client.get("/dashboard"))

    assert [r.status_code for r in responses] == [200] * 20
    assert all(r.json() == DASHBOARD for r in responses)
    assert len(spy.sessions) == 60  # a session for each query of each request
    assert spy.max_in_use == 6  # the others waited for a connection


# --8<-- [end:body]
async def test_an_empty_database_is_an_empty_dashboard(monkeypatch, sqlalchemy_url):
    monkeypatch.setattr(snippet, "DATABASE_URL", sqlalchemy_url)  # no rows

    async with app_client(snippet.app) as client:
        response = await client.get("/dashboard")

    assert response.json() == {
        "users": [],
        "orders": [],
        "counts": {"users": 0, "orders": 0},
    }


# --8<-- [start:sessions]
async def test_each_query_runs_in_its_own_session_at_the_same_time(client, spy):
    await client.get("/dashboard")
    await warm_up(spy)
    spy.sessions.clear()

    response = await client.get("/dashboard")

    assert response.status_code == 200
    assert len(spy.sessions) == 3
    assert len({id(session) for session in spy.sessions}) == 3
    assert spy.max_in_use == 3  # three connections checked out at once
    assert spy.in_use == 0  # and all returned to the pool


# --8<-- [end:sessions]
# --8<-- [start:pool]
async def test_a_small_pool_makes_queries_wait_then_503(monkeypatch, app, spy):
    monkeypatch.setattr(snippet, "POOL_SIZE", 1)
    monkeypatch.setattr(snippet, "POOL_TIMEOUT", 0.5)  # ample for three queries

    async with app_client(app) as client:
        first = await client.get("/dashboard")  # three queries, one connection
        async with spy.factory() as other:  # someone else holds that connection
            await other.connection()
            busy, seconds = await timed(client.get("/dashboard"))
        after = await client.get("/dashboard")

    assert (first.status_code, first.json()) == (200, DASHBOARD)
    assert spy.max_in_use == 1
    assert busy.status_code == 503
    assert busy.json() == {"detail": "Database busy, try again"}
    assert seconds >= 0.5  # it waited POOL_TIMEOUT for a connection
    assert (after.status_code, after.json()) == (200, DASHBOARD)


# --8<-- [end:pool]
# --8<-- [start:latency]
DELAY = 0.015  # one way: through the proxy a round trip takes at least 30 ms


@pytest.fixture
async def slow(postgres_url: str) -> AsyncIterator[SessionSpy]:
    """A spy on the sessions of an engine that reaches PostgreSQL, seeded, through
    `latency_proxy`."""
    url = make_url(postgres_url).set(drivername="postgresql+asyncpg")
    url = url.render_as_string(hide_password=False)
    await seed(url)
    async with latency_proxy(url, DELAY) as slow_url:
        engine = create_async_engine(slow_url)
        spy = SessionSpy()
        spy.watch(async_sessionmaker(engine))
        try:
            yield spy
        finally:
            await engine.dispose()


async def round_trips(call: Callable[[], Awaitable[T]]) -> tuple[T, float]:
    """Await `call()`; return its result and its time in round trips through the
    proxy. It can never take fewer than it makes; a busy machine only adds time."""
    result, seconds = await timed(call())
    return result, seconds / (2 * DELAY)


@pytest.mark.service("postgres")
async def test_over_a_slow_network_three_sessions_beat_one(slow):
    async def gathered_in_one_session() -> None:  # the tutorials' way, see below
        async with slow.factory() as session:
            await session.connection()  # so that the gather does not fail
            await asyncio.gather(
                snippet.read_users(session),
                snippet.read_orders(session),
                snippet.read_counts(session),
            )

    await warm_up(slow)  # asyncpg prepares each statement once per connection
    timings = [await round_trips(partial(snippet.dashboard, slow.factory))]
    _, one_by_one = await round_trips(partial(sequential, slow.factory))
    _, gathered = await round_trips(gathered_in_one_session)
    timings += [await round_trips(partial(snippet.dashboard, slow.factory))]
    parallel = min(trips for _, trips in timings)

    assert [dashboard.model_dump() for dashboard, _ in timings] == [DASHBOARD] * 2
    assert one_by_one >= 5  # BEGIN, three queries, ROLLBACK
    assert gathered >= 5  # one session, one connection: no overlap at all
    assert 3 <= parallel < 5  # BEGIN, a query, ROLLBACK, in three sessions at once


# --8<-- [end:latency]
# --8<-- [start:counts]
USER_COUNT = select(func.count()).select_from(User)
ORDER_COUNT = select(func.count()).select_from(Order)


async def prepare_everywhere(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        for query in [snippet.COUNTS, USER_COUNT, ORDER_COUNT]:
            await session.execute(query)


async def in_one_select(sessions: async_sessionmaker[AsyncSession]) -> Counts:
    async with sessions() as session:
        return await snippet.read_counts(session)  # COUNTS


async def in_two_sessions(sessions: async_sessionmaker[AsyncSession]) -> Counts:
    async def count(query: Select[tuple[int]]) -> int | None:
        async with sessions() as session:
            return await session.scalar(query)

    users, orders = await asyncio.gather(count(USER_COUNT), count(ORDER_COUNT))
    return Counts(users=users, orders=orders)


async def one_after_the_other(sessions: async_sessionmaker[AsyncSession]) -> Counts:
    async with sessions() as session:
        users = await session.scalar(USER_COUNT)
        return Counts(users=users, orders=await session.scalar(ORDER_COUNT))


@pytest.mark.service("postgres")
async def test_one_select_for_both_counts_beats_two(slow):
    # Two connections in the pool, each with every statement prepared.
    await asyncio.gather(*(prepare_everywhere(slow.factory) for _ in range(2)))
    ways = [in_one_select, in_two_sessions, one_after_the_other]
    trips: dict[object, list[float]] = {way: [] for way in ways}
    connections = {}

    for _ in range(3):  # interleaved, so that a busy machine slows all three
        for way in ways:
            slow.max_in_use = 0
            counts, taken = await round_trips(partial(way, slow.factory))
            assert counts == Counts(users=3, orders=3)
            trips[way].append(taken)
            connections[way] = slow.max_in_use

    assert connections == {in_one_select: 1, in_two_sessions: 2, one_after_the_other: 1}
    assert min(trips[in_one_select]) >= 3  # BEGIN, the SELECT, ROLLBACK
    assert min(trips[in_two_sessions]) >= 3  # the same, in two sessions at once
    assert min(trips[one_after_the_other]) >= 4  # BEGIN, two SELECTs, ROLLBACK
    one, two = median(trips[in_one_select]), median(trips[one_after_the_other])
    assert one < 0.9 * two  # measured: 3 round trips against 4


# --8<-- [end:counts]
# --8<-- [start:sqlite]
def aiosqlite_threads() -> int:
    return sum("_connection_worker_thread" in t.name for t in threading.enumerate())


async def test_on_sqlite_each_connection_is_a_thread(monkeypatch, tmp_path, spy):
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    await seed(url)
    monkeypatch.setattr(snippet, "DATABASE_URL", url)

    async with app_client(snippet.app) as client:
        before = aiosqlite_threads()  # the lifespan left one connection in the pool
        await client.get("/dashboard")
        await warm_up(spy)
        assert aiosqlite_threads() == before + 2  # three connections, three threads
        dashboard = await snippet.dashboard(spy.factory)

    assert dashboard.model_dump() == DASHBOARD
    assert spy.max_in_use == 3


async def test_on_sqlite_writers_take_turns(tmp_path):
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    ada_wrote = asyncio.Event()
    events: list[str] = []

    async def write(name: str) -> None:
        async with engine.begin() as connection:
            if name == "bob":
                await ada_wrote.wait()
            await connection.execute(insert(User).values(name=name, password_hash="x"))
            events.append(f"{name} wrote")
            if name == "ada":
                ada_wrote.set()
                await asyncio.sleep(0.05)  # bob is waiting for the file's write lock
        events.append(f"{name} committed")

    try:
        async with engine.begin() as connection:
            await connection.run_sync(snippet.Base.metadata.create_all)
        await asyncio.gather(write("ada"), write("bob"))
    finally:
        await engine.dispose()

    assert events == ["ada wrote", "ada committed", "bob wrote", "bob committed"]


# --8<-- [end:sqlite]
# --8<-- [start:seed]
def tutorial_app(url: str) -> FastAPI:
    engine = create_async_engine(url)
    AsyncSessionLocal = async_sessionmaker(engine, expire_on_commit=False)
    opened: list[AsyncSession] = []

    def recorded() -> AsyncSession:
        opened.append(AsyncSessionLocal())
        return opened[-1]

    get_db = tutorial_get_db(recorded)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # Let the queries that gather left running finish, and close their sessions.
        stray = [
            task
            for task in asyncio.all_tasks()
            if task.get_coro().__qualname__ == "AsyncSession.execute"
        ]
        await asyncio.gather(*stray, return_exceptions=True)
        for session in opened:
            await session.close()
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/dashboard")
    async def get_dashboard(db: Annotated[AsyncSession, Depends(get_db)]):
        users_query = db.execute(select(User).limit(10))
        orders_query = db.execute(select(Order).limit(10))
        stats_query = db.execute(select(func.count(User.id)))
        users, orders, stats = await asyncio.gather(
            users_query, orders_query, stats_query
        )
        return {
            "users": users.scalars().all(),
            "orders": orders.scalars().all(),
            "total_users": stats.scalar(),
        }

    return app


async def test_the_tutorial_gather_on_one_session_fails(sqlalchemy_url):
    await seed(sqlalchemy_url)
    async with running(tutorial_app(sqlalchemy_url)) as app:
        async with client_for(app) as client:
            with pytest.raises(InvalidRequestError) as raised:
                await client.get("/dashboard")
        async with client_for(app, raise_app_exceptions=False) as client:
            responses, _ = await run_concurrently(5, lambda: client.get("/dashboard"))

    error = raised.value  # from the close() at the end of get_db's `async with`
    assert type(error) is IllegalStateChangeError
    assert str(error).startswith("Method 'close()' can't be called here")
    assert type(error.__context__) is InvalidRequestError  # from the second query
    assert str(error.__context__).startswith(
        "This session is provisioning a new connection; "
        "concurrent operations are not permitted"
    )
    failed = [r for r in responses if r.status_code == 500]
    assert len(failed) >= 4  # every request that needed a new connection
    assert failed[0].text == "Internal Server Error"


# --8<-- [end:seed]
