import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
import sqlalchemy.exc
from fastapi import Depends, FastAPI, HTTPException
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docs_src.databases import asyncpg_pool as snippet
from tests.databases.tutorial import AsyncDatabaseSession
from tests.harness import (
    app_client,
    client_for,
    latency_proxy,
    logged_exceptions,
    running,
    timed,
    wait_until,
)

pytestmark = pytest.mark.anyio
APP_NAME = f"asyncpg-pool-{uuid.uuid4().hex[:8]}"  # labels the app's connections
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"


@pytest.fixture
def url(postgres_url: str) -> str:
    """The throwaway database; the server sees the app's connections by name."""
    return f"{postgres_url}?application_name={APP_NAME}"


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> list[tuple[asyncpg.Pool, dict]]:
    """Each pool `asyncpg.create_pool` makes during the test, with its arguments."""
    made: list[tuple[asyncpg.Pool, dict]] = []
    create_pool = asyncpg.create_pool

    def spy(*args: Any, **kwargs: Any) -> asyncpg.Pool:
        made.append((create_pool(*args, **kwargs), kwargs))
        return made[-1][0]

    monkeypatch.setattr(asyncpg, "create_pool", spy)
    return made


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, url: str, pools):
    monkeypatch.setattr(snippet, "DATABASE_URL", url)
    monkeypatch.setattr(snippet, "COMMAND_TIMEOUT", 1.0)
    return snippet.app


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    """The test's own connection, to arrange rows and look at them afterwards."""
    connection = await asyncpg.connect(postgres_url)
    try:
        yield connection
    finally:
        await connection.close()


async def add_users(db: asyncpg.Connection, count: int) -> None:
    await db.executemany(
        "INSERT INTO users (email, name, password_hash) VALUES ($1, $2, $3)",
        [(f"user{i}@example.com", f"User {i}", HASH) for i in range(1, count + 1)],
    )


async def balances(db: asyncpg.Connection) -> list[int]:
    rows = await db.fetch("SELECT balance FROM accounts ORDER BY id")
    return [row["balance"] for row in rows]


async def app_connections(db: asyncpg.Connection) -> int:
    """How many connections the app has open, as PostgreSQL counts them."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
    return await db.fetchval(query, APP_NAME)


async def until_app_waits_for_a_lock(db: asyncpg.Connection) -> None:
    """Wait (2 s at most) until one of the app's queries waits for a row lock."""
    query = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = $1 AND wait_event_type = 'Lock'"
    )
    async with asyncio.timeout(2):
        while not await db.fetchval(query, APP_NAME):  # noqa: ASYNC110 (polls)
            await asyncio.sleep(0.01)


async def until_app_connections(db: asyncpg.Connection, count: int) -> None:
    """Wait (2 s at most) until the app has `count` connections: the server ends
    a connection a moment after the client closed it."""
    async with asyncio.timeout(2):
        while await app_connections(db) != count:  # noqa: ASYNC110 (polls the server)
            await asyncio.sleep(0.01)


def transfer(source: int, target: int, amount: int) -> dict[str, int]:
    return {"source": source, "target": target, "amount": amount}


# --8<-- [start:reads]
async def test_reads_return_the_public_columns_only(client, db):
    await add_users(db, 3)  # each with a password_hash

    listed = await client.get("/users", params={"limit": 2})
    one = await client.get("/users/3")
    missing = await client.get("/users/4")

    assert listed.json() == [
        {"id": 1, "email": "user1@example.com", "name": "User 1"},
        {"id": 2, "email": "user2@example.com", "name": "User 2"},
    ]
    assert one.json() == {"id": 3, "email": "user3@example.com", "name": "User 3"}
    assert (missing.status_code, missing.json()) == (404, {"detail": "User not found"})


async def test_bad_input_is_a_422_not_a_driver_error(client, db):
    for path in ["/users?limit=101", "/users?limit=0", "/users/0", "/users/2147483648"]:
        response = await client.get(path)

        assert response.status_code == 422
    with pytest.raises(asyncpg.DataError, match="out of int32 range"):  # a 500
        await db.fetchval("SELECT name FROM users WHERE id = $1", 2**31)


# --8<-- [end:reads]
# --8<-- [start:never-read]
async def test_the_app_never_reads_password_hash(monkeypatch, app, db, postgres_url):
    await db.execute(snippet.SCHEMA)
    await add_users(db, 2)
    async with login_role(db) as role:
        await db.execute(f"GRANT SELECT (id, email, name) ON users TO {role}")
        monkeypatch.setattr(snippet, "DATABASE_URL", url_for(role, postgres_url))
        async with app_client(app) as client:
            listed = await client.get("/users")
            one = await client.get("/users/2")
        as_role = await asyncpg.connect(url_for(role, postgres_url))
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await as_role.fetch("SELECT * FROM users")  # what the role may not do
        finally:
            await as_role.close()

    assert (listed.status_code, one.status_code) == (200, 200)
    assert len(listed.json()) == 2


# --8<-- [end:never-read]
async def test_an_invalid_transfer_is_a_422_that_echoes_nothing(client, db):
    bodies = [
        {},
        transfer(1, 2, 0),
        transfer(0, 2, 1),
        transfer(1, 2**31, 1),
        {"source": 1, "target": 2, "amount": "NaN"},
        transfer(1, 2, 1_000_001),
    ]
    for body in bodies:
        response = await client.post("/transfers", json=body)

        assert response.status_code == 422
        assert all(set(e) == {"type", "loc", "msg"} for e in response.json()["detail"])
    assert "NaN" not in response.text


async def test_a_transfer_to_the_same_account_is_a_422(client, db):
    await db.execute("INSERT INTO accounts (balance) VALUES (100)")

    response = await client.post("/transfers", json=transfer(1, 1, 5))

    assert (response.status_code, response.json()["detail"]) == (
        422,
        [
            {
                "type": "value_error",
                "loc": ["body"],
                "msg": "Value error, source and target must differ",
            }
        ],
    )
    assert await balances(db) == [100]


# --8<-- [start:one-pool]
async def test_one_pool_for_all_requests_closed_at_shutdown(app, pools, db):
    async with app_client(app) as client:
        responses = await asyncio.gather(*(client.get("/users") for _ in range(20)))
        [(pool, arguments)] = pools  # one pool, made at startup
        assert await app_connections(db) == pool.get_size() <= snippet.MAX_SIZE

    assert [r.status_code for r in responses] == [200] * 20
    assert arguments == {"min_size": 2, "max_size": 10, "command_timeout": 1.0}
    assert pool.is_closing()  # closed by the lifespan
    await until_app_connections(db, 0)  # and the server has no connection left


# --8<-- [end:one-pool]
async def test_an_unreachable_database_stops_the_app_at_startup(monkeypatch):
    with socket.socket() as closed_port:  # bound, never listening: refuses
        closed_port.bind(("127.0.0.1", 0))
        port = closed_port.getsockname()[1]
        monkeypatch.setattr(snippet, "DATABASE_URL", f"postgresql://u@127.0.0.1:{port}")

        with pytest.raises(ConnectionRefusedError):
            async with running(snippet.app):
                pass


# --8<-- [start:released]
def noting_idle(app: ASGIApp, pool: asyncpg.Pool, idle: list[bool]) -> ASGIApp:
    """`app`, noting in `idle` whether every connection is back in the pool at
    the moment each response starts."""

    async def app_noting_idle(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_noting_idle(message: Message) -> None:
            if message["type"] == "http.response.start":
                idle.append(pool.get_idle_size() == pool.get_size())
            await send(message)

        await app(scope, receive, send_noting_idle)

    return app_noting_idle


async def test_every_request_gives_its_connection_back_before_responding(
    app, pools, db
):
    idle: list[bool] = []
    async with running(app) as started:
        [(pool, _)] = pools
        async with client_for(noting_idle(started, pool, idle)) as client:
            await db.execute("INSERT INTO accounts (balance) VALUES (10), (0)")
            statuses = [(await request).status_code for request in each_outcome(client)]

    assert statuses == [200, 404, 201, 409, 404, 422, 422]
    assert idle == [True] * 7  # back in the pool when the response started


def each_outcome(client: httpx.AsyncClient) -> list[Awaitable[httpx.Response]]:
    return [
        client.get("/users"),
        client.get("/users/1"),  # 404
        client.post("/transfers", json=transfer(1, 2, 5)),
        client.post("/transfers", json=transfer(1, 2, 50)),  # 409
        client.post("/transfers", json=transfer(1, 3, 1)),  # 404 after an UPDATE
        client.get("/users?limit=1000"),  # 422
        client.post("/transfers", json=transfer(2, 2, 1)),  # 422
    ]


# --8<-- [end:released]
# --8<-- [start:transfer]
async def test_a_transfer_changes_both_accounts_or_neither(client, db):
    await db.execute("INSERT INTO accounts (balance) VALUES (100), (0)")

    moved = await client.post("/transfers", json=transfer(1, 2, 30))
    too_much = await client.post("/transfers", json=transfer(1, 2, 500))
    no_target = await client.post("/transfers", json=transfer(1, 3, 30))
    no_source = await client.post("/transfers", json=transfer(3, 1, 30))

    assert moved.status_code == 201
    assert moved.json() == [{"id": 1, "balance": 70}, {"id": 2, "balance": 30}]
    assert (too_much.status_code, too_much.json()) == (
        409,
        {"detail": "Insufficient funds"},
    )
    assert (no_target.status_code, no_target.json()) == (
        404,
        {"detail": "Account not found"},
    )
    assert no_source.status_code == 404
    assert await balances(db) == [70, 30]  # what another connection sees


async def test_an_error_in_the_second_update_undoes_the_first(app, db):
    async with running(app) as started:
        await db.execute("INSERT INTO accounts (balance) VALUES (100), (0)")
        await db.execute("""
            CREATE FUNCTION frozen() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'account % is frozen', NEW.id; END $$;
            CREATE TRIGGER frozen BEFORE UPDATE ON accounts
            FOR EACH ROW WHEN (NEW.id = 2) EXECUTE FUNCTION frozen();
        """)  # the second UPDATE, on account 2, fails
        async with client_for(started, raise_app_exceptions=False) as client:
            response = await client.post("/transfers", json=transfer(1, 2, 30))

    assert response.status_code == 500  # an error nobody planned for
    assert "frozen" not in response.text
    assert await balances(db) == [100, 0]  # the debit was rolled back


# --8<-- [end:transfer]
# --8<-- [start:deadlock]
async def test_opposite_transfers_at_once_do_not_deadlock(client, db):
    await db.execute("INSERT INTO accounts (balance) VALUES (1000), (1000)")

    responses = await asyncio.gather(
        *(client.post("/transfers", json=transfer(1, 2, 1)) for _ in range(20)),
        *(client.post("/transfers", json=transfer(2, 1, 1)) for _ in range(20)),
    )

    assert [r.status_code for r in responses] == [201] * 40
    assert await balances(db) == [1000, 1000]


async def test_without_the_lock_opposite_transfers_deadlock(monkeypatch, app, url, db):
    monkeypatch.setattr(snippet, "LOCK", "SELECT $1::integer[]")  # locks nothing
    # PostgreSQL looks for deadlocks after 1 s by default: 50 ms keeps the test short.
    monkeypatch.setattr(snippet, "DATABASE_URL", f"{url}&deadlock_timeout=50")
    errors: list[Exception] = []  # what escaped the app
    async with (
        running(app) as started,
        client_for(raising(started, errors), raise_app_exceptions=False) as client,
    ):
        await db.execute("INSERT INTO accounts (balance) VALUES (1000), (1000)")
        responses = await asyncio.gather(
            *(client.post("/transfers", json=transfer(1, 2, 1)) for _ in range(20)),
            *(client.post("/transfers", json=transfer(2, 1, 1)) for _ in range(20)),
        )

    statuses = [r.status_code for r in responses]
    assert 500 in statuses
    assert set(statuses) == {201, 500}
    assert len(errors) == statuses.count(500)
    assert all(isinstance(e, asyncpg.DeadlockDetectedError) for e in errors)
    assert sum(await balances(db)) == 2000  # the aborted transfers rolled back


def raising(app: ASGIApp, errors: list[Exception]) -> ASGIApp:
    """`app`, noting in `errors` each exception that escapes it."""

    async def app_noting_errors(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        except Exception as error:
            errors.append(error)
            raise

    return app_noting_errors


# --8<-- [end:deadlock]
# --8<-- [start:exhausted]
async def test_no_free_connection_is_a_503_after_the_acquire_timeout(
    monkeypatch, app, pools, db
):
    monkeypatch.setattr(snippet, "MIN_SIZE", 1)
    monkeypatch.setattr(snippet, "MAX_SIZE", 1)
    monkeypatch.setattr(snippet, "ACQUIRE_TIMEOUT", 0.2)
    async with app_client(app) as client:
        await db.execute("INSERT INTO accounts (balance) VALUES (100), (0)")
        [(pool, _)] = pools
        async with db.transaction():
            await db.execute("SELECT FROM accounts WHERE id = 1 FOR UPDATE")
            stuck = asyncio.create_task(
                client.post("/transfers", json=transfer(1, 2, 30))
            )
            await wait_until(lambda: pool.get_idle_size() == 0)
            busy, seconds = await timed(client.get("/users"))
        moved = await stuck  # the lock is gone: the transfer goes through
        after = await client.get("/users")

    assert (busy.status_code, busy.json()) == (
        503,
        {"detail": "No free database connection"},
    )
    assert 0.2 <= seconds < 1.0
    assert (moved.status_code, after.status_code) == (201, 200)


# --8<-- [end:exhausted]
# --8<-- [start:command-timeout]
async def test_a_query_slower_than_command_timeout_is_a_503(
    monkeypatch, app, pools, db
):
    monkeypatch.setattr(snippet, "COMMAND_TIMEOUT", 0.2)
    async with app_client(app) as client:
        await db.execute("INSERT INTO accounts (balance) VALUES (100), (0)")
        async with db.transaction():
            await db.execute("SELECT FROM accounts WHERE id = 1 FOR UPDATE")
            slow, seconds = await timed(
                client.post("/transfers", json=transfer(1, 2, 30))
            )
        moved = await client.post("/transfers", json=transfer(1, 2, 30))
        [(pool, _)] = pools
        assert pool.get_idle_size() == pool.get_size()

    assert (slow.status_code, slow.json()) == (503, {"detail": "Database timeout"})
    assert 0.2 <= seconds < 1.0
    assert moved.status_code == 201  # the pool still works
    assert await balances(db) == [70, 30]  # one transfer, not two


# --8<-- [end:command-timeout]
async def test_a_lost_database_is_a_503_and_the_cause_is_logged(
    monkeypatch, app, url, caplog
):
    async with AsyncExitStack() as network:
        proxied = await network.enter_async_context(latency_proxy(url, delay=0))
        monkeypatch.setattr(snippet, "DATABASE_URL", proxied)
        async with app_client(app) as client:
            before = await client.get("/users")
            await network.aclose()  # the database server goes away
            after = await client.get("/users")

    assert before.status_code == 200
    assert (after.status_code, after.json()) == (
        503,
        {"detail": "Database unavailable"},
    )
    assert ConnectionRefusedError in logged_exceptions(caplog, snippet.logger)


async def test_a_connection_lost_mid_query_is_a_503(monkeypatch, app, url, db, caplog):
    async with AsyncExitStack() as network:
        proxied = await network.enter_async_context(latency_proxy(url, delay=0))
        monkeypatch.setattr(snippet, "DATABASE_URL", proxied)
        async with app_client(app) as client:
            await db.execute("INSERT INTO accounts (balance) VALUES (100), (0)")
            async with db.transaction():
                await db.execute("SELECT FROM accounts WHERE id = 1 FOR UPDATE")
                stuck = asyncio.create_task(
                    client.post("/transfers", json=transfer(1, 2, 30))
                )
                await until_app_waits_for_a_lock(db)  # the transfer's LOCK query
                await network.aclose()  # the network goes down mid-query
                lost = await stuck

    assert (lost.status_code, lost.json()) == (503, {"detail": "Database unavailable"})
    [error] = [r.exc_info[1] for r in caplog.records if r.name == snippet.__name__]
    assert isinstance(error, asyncpg.InterfaceError)  # from the transaction's ROLLBACK
    assert isinstance(error.__context__, asyncpg.ConnectionDoesNotExistError)
    await until_app_connections(db, 0)
    assert await balances(db) == [100, 0]  # the server rolled the transfer back


# --- pool sizing --------------------------------------------------------------


# --8<-- [start:budget]
async def test_the_pages_budget_on_a_stock_server(db):
    settings = dict(
        await db.fetch(
            "SELECT name, setting::integer FROM pg_settings WHERE name IN"
            " ('max_connections', 'superuser_reserved_connections',"
            " 'reserved_connections')"  # PostgreSQL 16 added the last one
        )
    )
    max_connections = settings.pop("max_connections")
    reserved = sum(settings.values())
    if (max_connections, reserved) != (100, 3):
        pytest.skip(
            "the page's numbers are for a stock server (max_connections = 100,"
            f" 3 reserved); this one has {max_connections}, {reserved} reserved"
        )
    budget = max_connections - reserved
    per_instance = 4 * snippet.MAX_SIZE  # `--workers 4`, MAX_SIZE each

    assert budget == 97
    assert budget // snippet.MAX_SIZE == 9  # worker processes, all instances
    assert (2 * per_instance, budget - 2 * per_instance) == (80, 17)  # fits
    assert 3 * per_instance == 120 > budget  # a third instance does not


# --8<-- [end:budget]
# --8<-- [start:too-many]
@asynccontextmanager
async def login_role(db: asyncpg.Connection, limit: int = -1) -> AsyncIterator[str]:
    """A role that may log in and hold `limit` connections (-1: no limit).

    Roles belong to the whole server, not to the throwaway database: this one is
    dropped again, whatever happens.
    """
    role = f"pool_{uuid.uuid4().hex[:8]}"
    await db.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT {limit}")
    try:
        await db.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {role}")
        yield role
    finally:
        await db.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")


def url_for(role: str, postgres_url: str) -> str:
    return make_url(postgres_url).set(username=role, password=None).render_as_string()


async def test_two_workers_whose_pools_exceed_the_limit(
    monkeypatch, app, pools, db, postgres_url, caplog
):
    monkeypatch.setattr(snippet, "MIN_SIZE", 1)
    monkeypatch.setattr(snippet, "MAX_SIZE", 2)  # 2 workers x 2 = 4 connections
    async with login_role(db, limit=3) as role, AsyncExitStack() as run:
        monkeypatch.setattr(snippet, "DATABASE_URL", url_for(role, postgres_url))
        await run.enter_async_context(app_client(app))  # worker 1
        second = await run.enter_async_context(app_client(app))  # worker 2
        [(pool_1, _), (pool_2, _)] = pools
        for pool in (pool_1, pool_1, pool_2):  # three requests in progress
            await run.enter_async_context(pool.acquire())

        response = await second.get("/users")  # worker 2 opens a 4th connection

    assert (response.status_code, response.json()) == (
        503,
        {"detail": "Database unavailable"},
    )
    [error] = [r.exc_info[1] for r in caplog.records if r.name == snippet.__name__]
    assert isinstance(error, asyncpg.TooManyConnectionsError)
    assert str(error) == f'too many connections for role "{role}"'


# --8<-- [end:too-many]
# --8<-- [start:sqlalchemy]
async def test_sqlalchemy_holds_pool_size_plus_max_overflow(postgres_url, db):
    sqlalchemy_url = postgres_url.replace("postgresql://", "postgresql+asyncpg://")
    defaults = create_async_engine(sqlalchemy_url)
    engine = create_async_engine(
        sqlalchemy_url,
        pool_size=2,
        max_overflow=1,
        pool_timeout=0.1,
        connect_args={"server_settings": {"application_name": APP_NAME}},
    )
    try:
        async with AsyncExitStack() as held:
            for _ in range(3):
                await held.enter_async_context(engine.connect())
            assert await app_connections(db) == 3  # pool_size + max_overflow

            with pytest.raises(sqlalchemy.exc.TimeoutError) as error:
                async with engine.connect() as fourth:
                    await fourth.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
        await defaults.dispose()

    assert "QueuePool limit of size 2 overflow 1 reached" in str(error.value)
    assert (defaults.pool.size(), defaults.pool._max_overflow) == (5, 10)


# --8<-- [end:sqlalchemy]
# --8<-- [start:pgbouncer]
async def test_statement_cache_size_0_leaves_no_prepared_statement(postgres_url):
    query = "SELECT name FROM pg_prepared_statements"
    for cache_size, expected in [(100, True), (0, False)]:  # 100: the default
        pool = asyncpg.create_pool(
            postgres_url, min_size=1, max_size=1, statement_cache_size=cache_size
        )
        async with pool, pool.acquire() as connection:
            await connection.fetchval("SELECT $1::integer", 1)
            names = [row["name"] for row in await connection.fetch(query)]

        assert any(n.startswith("__asyncpg_stmt_") for n in names) is expected


# --8<-- [end:pgbouncer]
async def test_asyncpg_does_not_take_sqlalchemy_urls():
    with pytest.raises(asyncpg.ClientConfigurationError, match="postgresql\\+asyncpg"):
        await asyncpg.create_pool("postgresql+asyncpg://app@localhost/app")


# --- what many tutorials write --------------------------------------------------


# --8<-- [start:seed-per-request]
def pool_per_request_app(url: str) -> FastAPI:
    async def get_asyncpg_pool():  # as a widely copied tutorial writes it
        pool = await asyncpg.create_pool(url, min_size=10, max_size=20)
        try:
            yield pool
        finally:
            await pool.close()

    tutorial = FastAPI()

    @tutorial.get("/users-fast/{user_id}")
    async def get_user_fast(user_id: int, pool=Depends(get_asyncpg_pool)):  # noqa: B008
        async with pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM users WHERE id = $1", user_id)
            if not row:
                raise HTTPException(status_code=404, detail="User not found")
            return dict(row)

    return tutorial


async def test_a_pool_per_request_opens_ten_connections_per_request(
    monkeypatch, url, db
):
    opened: list[int] = []  # how many connections each new pool opened
    create_pool = asyncpg.create_pool

    async def counting(*args: Any, **kwargs: Any) -> asyncpg.Pool:
        pool = await create_pool(*args, **kwargs)
        opened.append(pool.get_size())
        return pool

    monkeypatch.setattr(asyncpg, "create_pool", counting)
    async with app_client(pool_per_request_app(url)) as client:
        await db.execute(snippet.SCHEMA)
        await add_users(db, 1)
        responses = [await client.get("/users-fast/1") for _ in range(4)]

    assert opened == [10, 10, 10, 10]  # 40 connections for 4 requests
    assert set(responses[0].json()) == {"id", "email", "name", "password_hash"}


# --8<-- [end:seed-per-request]
async def test_a_pool_per_request_is_much_slower(app, url, db):
    async def ten_requests(client, path: str) -> float:  # one after the other
        start = time.perf_counter()
        for _ in range(10):
            assert (await client.get(path)).status_code == 200
        return time.perf_counter() - start

    async with (
        app_client(app) as pooled,
        app_client(pool_per_request_app(url)) as per_request,
    ):
        await add_users(db, 1)
        await ten_requests(pooled, "/users/1")  # warm up
        shared = await ten_requests(pooled, "/users/1")
        fresh = await ten_requests(per_request, "/users-fast/1")

    assert fresh > 5 * shared


# --8<-- [start:seed-pool-class]
async def test_the_tutorial_pool_class_waits_for_ever_and_leaks(url, db):
    class DatabasePool:  # as the tutorial writes it, `def init` included
        def init(self):
            self.pool = None

        async def create_pool(self):
            self.pool = await asyncpg.create_pool(url, min_size=1, max_size=1)

        async def get_connection(self):
            async with self.pool.acquire() as connection:  # no timeout
                yield connection

    db_pool = DatabasePool()
    tutorial = FastAPI()

    @tutorial.get("/users")
    async def get_users(conn=Depends(db_pool.get_connection)):  # noqa: B008
        rows = await conn.fetch("SELECT * FROM users")
        return [dict(row) for row in rows]

    with pytest.raises(AttributeError, match="no attribute 'pool'"):
        await anext(db_pool.get_connection())  # before startup: `init` never ran
    await db_pool.create_pool()  # what its startup hook does
    try:
        async with app_client(tutorial) as client:
            await db.execute(snippet.SCHEMA)
            await add_users(db, 1)
            async with db_pool.pool.acquire():  # another request holds it
                waiting = asyncio.create_task(client.get("/users"))
                done, _ = await asyncio.wait({waiting}, timeout=0.5)
                assert not done  # still waiting: no 503, no timeout
            response = await waiting
    finally:
        await db_pool.pool.close()

    assert set(response.json()[0]) == {"id", "email", "name", "password_hash"}


# --8<-- [end:seed-pool-class]
# --8<-- [start:seed-session]
async def test_the_tutorial_session_hides_the_error_and_keeps_the_write(app, pools, db):
    async def tutorial_write(pool: asyncpg.Pool) -> None:
        async with AsyncDatabaseSession(pool) as conn:
            await conn.execute("INSERT INTO accounts (balance) VALUES (1)")
            raise RuntimeError("query failed")

    async def our_write(pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn, conn.transaction():  # the fix
            await conn.execute("INSERT INTO accounts (balance) VALUES (2)")
            raise RuntimeError("query failed")

    async with running(app):
        [(pool, _)] = pools
        with pytest.raises(AttributeError, match="no attribute 'rollback'") as error:
            await tutorial_write(pool)
        assert isinstance(error.value.__context__, RuntimeError)  # hidden behind it
        assert not hasattr(asyncpg.Connection, "rollback")
        with pytest.raises(RuntimeError, match="query failed"):
            await our_write(pool)
        assert pool.get_idle_size() == pool.get_size()  # and released

    assert await balances(db) == [1]  # the tutorial's write stayed, ours did not


# --8<-- [end:seed-session]
