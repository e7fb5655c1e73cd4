import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI

from docs_src.resources import async_context_managers as snippet
from tests.databases.tutorial import AsyncDatabaseSession
from tests.harness import client_for, run_concurrently

pytestmark = pytest.mark.anyio


@pytest.fixture
def db(monkeypatch: pytest.MonkeyPatch) -> snippet.Database:
    """The database the app's lifespan will use, so tests can read its log."""
    db = snippet.Database()
    monkeypatch.setattr(snippet, "Database", lambda: db)
    return db


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, db):
    monkeypatch.setattr(snippet, "QUERY_DELAY", 0.01)
    return snippet.app


# --8<-- [start:class]
async def test_the_class_releases_on_success(client, db):
    response = await client.get("/products/pen")

    assert response.json() == {"price": 2}
    assert db.log == ["released after success"]
    assert db.in_use == 0


async def test_the_class_releases_on_error(client, db):
    response = await client.get("/products/ghost")

    assert response.status_code == 404
    assert response.json() == {"detail": "Unknown product"}
    assert db.log == ["released after HTTPException"]
    assert db.in_use == 0


# --8<-- [end:class]
# --8<-- [start:function]
async def test_the_transaction_commits_on_success(client, db):
    response = await client.post("/orders", json={"products": ["pen", "book"]})

    assert response.status_code == 201
    assert response.json() == {"total": 14}
    assert db.order_lines == [("pen", 2), ("book", 12)]
    assert db.log == ["commit", "released after success"]


async def test_the_transaction_rolls_back_on_error(client, db):
    response = await client.post("/orders", json={"products": ["pen", "ghost"]})

    assert response.status_code == 422
    assert response.json() == {"detail": "Unknown product: ghost"}
    assert db.order_lines == []  # the pen line written before the error is gone
    assert db.log == ["rollback", "released after HTTPException"]  # in that order


async def test_the_transaction_rolls_back_on_cancellation(client, db, monkeypatch):
    written: list[tuple[str, int]] = []  # what was pending when the deadline hit

    class StuckOnBook(snippet.Connection):
        async def price(self, product: str) -> int | None:
            if product == "book":  # the pen line is written; this query hangs
                written.extend(self.pending)
                await asyncio.Event().wait()
            return await super().price(product)

    monkeypatch.setattr(snippet, "Connection", StuckOnBook)
    monkeypatch.setattr(snippet, "TIMEOUT", 0.1)

    response = await client.post("/orders", json={"products": ["pen", "book"]})

    assert response.status_code == 504
    assert response.json() == {"detail": "Database timeout"}
    assert written == [("pen", 2)]  # a line was pending when the deadline hit...
    assert db.order_lines == []  # ...and it is gone
    assert db.log == ["rollback", "released after CancelledError"]
    assert db.in_use == 0


# --8<-- [end:function]
async def test_no_connection_leaks_under_concurrent_requests(client, db):
    requests = [
        lambda: client.get("/products/pen"),
        lambda: client.get("/products/ghost"),
        lambda: client.post("/orders", json={"products": ["book"]}),
        lambda: client.post("/orders", json={"products": ["pen", "ghost"]}),
    ]
    calls = itertools.cycle(requests)
    responses, _ = await run_concurrently(20, lambda: next(calls)())

    assert [r.status_code for r in responses] == [200, 404, 201, 422] * 5
    assert db.in_use == 0
    assert len([entry for entry in db.log if entry.startswith("released")]) == 20


@pytest.mark.parametrize(
    "body",
    [
        {"products": []},
        {"products": ["x" * 33]},
        {"products": ["pen"] * 21},
        {"products": "pen"},
        {},
    ],
)
async def test_invalid_orders_are_422_before_any_connection(client, db, body):
    response = await client.post("/orders", json=body)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "body"
    assert db.log == []


@pytest.mark.parametrize("number", ["NaN", "Infinity", "1e309"])
async def test_a_non_finite_number_is_a_422_that_echoes_nothing(client, db, number):
    body = '{"products": ["pen", ' + number + "]}"
    headers = {"Content-Type": "application/json"}

    response = await client.post("/orders", content=body, headers=headers)

    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "type": "string_type",
                "loc": ["body", "products", 1],
                "msg": "Input should be a valid string",
            }
        ]
    }
    assert db.log == []


async def test_with_fastapis_default_handler_the_same_body_is_a_500():
    bare = FastAPI()  # the same body model, without `invalid_input`

    @bare.post("/orders")
    async def create_order(order: snippet.Order) -> None: ...

    async with client_for(bare, raise_app_exceptions=False) as client:
        response = await client.post(
            "/orders",
            content='{"products": ["pen", NaN]}',
            headers={"Content-Type": "application/json"},
        )

    assert response.status_code == 500


# --8<-- [start:except-exception]
async def test_except_exception_misses_cancellation():
    log = []

    @asynccontextmanager
    async def transaction() -> AsyncIterator[None]:  # a common way to write it
        try:
            yield
        except Exception:
            log.append("rollback")
            raise
        log.append("commit")

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01), transaction():
            await asyncio.sleep(1)

    assert log == []  # CancelledError is not an Exception: no commit, no rollback


# --8<-- [end:except-exception]
# --8<-- [start:seed-init]
def test_def_init_is_not_a_constructor():
    class AsyncDatabaseSession:  # as a widely copied tutorial writes it
        def init(self, pool):
            self.pool = pool

    with pytest.raises(TypeError, match="takes no arguments"):
        AsyncDatabaseSession("pool")


# --8<-- [end:seed-init]
async def test_the_tutorial_session_releases_before_it_rolls_back():
    calls: list[str] = []

    class Connection:
        async def rollback(self) -> None:
            calls.append("rollback")

    class Pool:
        async def acquire(self) -> Connection:
            return Connection()

        async def release(self, conn: Connection) -> None:
            calls.append("release")

    with pytest.raises(RuntimeError, match="query failed"):
        async with AsyncDatabaseSession(Pool()):
            raise RuntimeError("query failed")

    assert calls == ["release", "rollback"]  # back in the pool, then rolled back
