import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from docs_src.resources import async_context_managers as snippet
from tests.harness import run_concurrently

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
    monkeypatch.setattr(snippet, "TIMEOUT", 0.05)
    monkeypatch.setattr(snippet, "QUERY_DELAY", 0.03)  # the 2nd query misses it

    response = await client.post("/orders", json={"products": ["pen", "book"]})

    assert response.status_code == 504
    assert response.json() == {"detail": "Database timeout"}
    assert db.order_lines == []
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
