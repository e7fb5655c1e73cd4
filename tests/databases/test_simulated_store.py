import asyncio

import pytest

from docs_src.databases import simulated_store as snippet
from tests.harness import run_concurrently

pytestmark = pytest.mark.anyio
LATENCY = 0.02


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(snippet, "LATENCY", LATENCY)
    return snippet.app


# --8<-- [start:reads]
async def test_items_and_unknown_ids(client):
    items = await client.get("/items")
    found = await client.get("/items/2")

    assert items.status_code == 200
    assert [item["id"] for item in items.json()] == [1, 2, 3]
    assert found.json() == {"id": 2, "name": "Item 2", "price": 21.98, "stock": 3}
    for bad_id, code in [("999", 404), ("0", 422), ("-1", 422), ("abc", 422)]:
        response = await client.get(f"/items/{bad_id}")
        assert response.status_code == code, bad_id
    assert (await client.get("/items/999")).json() == {"detail": "Item not found"}
    redirect = await client.get("/items/")  # the trailing slash the tutorial used
    assert redirect.status_code == 307
    assert redirect.headers["location"] == "http://test/items"


# --8<-- [end:reads]


# --8<-- [start:copies]
async def test_callers_get_copies_not_the_stored_rows():
    store = snippet.ItemStore([snippet.Item(id=1, name="pen", price=1.0, stock=3)])

    (listed,) = await store.all()
    listed.stock = 0
    fetched = await store.get(1)
    fetched.price = 0.0

    assert await store.get(1) == snippet.Item(id=1, name="pen", price=1.0, stock=3)


# --8<-- [end:copies]


# --8<-- [start:tutorial-store]
class TutorialDatabase:
    """The tutorial's store: it hands out the stored dicts themselves."""

    def __init__(self) -> None:
        self.data = [{"id": 1, "name": "Item 1", "price": 10.99}]

    async def get_all_items(self) -> list[dict]:
        await asyncio.sleep(0.01)
        return self.data


async def test_the_tutorial_store_shares_its_rows():
    db = TutorialDatabase()

    items = await db.get_all_items()
    items[0]["price"] = 0  # e.g. a route applying a discount to what it returns

    assert db.data[0]["price"] == 0  # every later request sees the change


# --8<-- [end:tutorial-store]


# --8<-- [start:purchases]
async def test_ten_buyers_for_three_in_stock(client):
    responses, elapsed = await run_concurrently(
        10, lambda: client.post("/items/1/purchase")
    )

    codes = sorted(response.status_code for response in responses)
    assert codes == [200] * 3 + [409] * 7
    assert {r.json()["detail"] for r in responses if r.status_code == 409} == {
        "Out of stock"
    }
    assert (await client.get("/items/1")).json()["stock"] == 0
    assert elapsed < 5 * 2 * LATENCY  # they ran at once: not 10 x 2 round trips
    assert (await client.post("/items/999/purchase")).status_code == 404


# --8<-- [end:purchases]


# --8<-- [start:lost-update]
class ReadThenWriteStore(snippet.ItemStore):
    """Reads the stock, then writes it back: one `await` apart."""

    async def take_one(self, item_id: int) -> snippet.Item | None:
        item = await self.get(item_id)
        if item is None or item.stock == 0:
            return None
        await asyncio.sleep(snippet.LATENCY)  # the write is another round trip
        self._items[item_id].stock = item.stock - 1
        return item


async def test_a_read_and_a_write_with_an_await_between_them_oversell():
    store = ReadThenWriteStore([snippet.Item(id=1, name="pen", price=1.0, stock=3)])

    sold = await asyncio.gather(*(store.take_one(1) for _ in range(10)))

    assert sum(item is not None for item in sold) == 10  # ten sold, three in stock
    assert (await store.get(1)).stock == 2  # and nine sales were lost


# --8<-- [end:lost-update]
