import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path, Request, status
from pydantic import BaseModel

LATENCY = 0.01  # seconds: what a round trip to a real database might cost


class Item(BaseModel):
    id: int
    name: str
    price: float
    stock: int


class ItemStore:
    """A stand-in for an items table, with the interface a real one would have."""

    def __init__(self, items: list[Item]) -> None:
        self._items = {item.id: item for item in items}

    async def all(self) -> list[Item]:
        await asyncio.sleep(LATENCY)
        return [item.model_copy() for item in self._items.values()]  # (1)!

    async def get(self, item_id: int) -> Item | None:
        await asyncio.sleep(LATENCY)
        item = self._items.get(item_id)
        return None if item is None else item.model_copy()

    async def take_one(self, item_id: int) -> Item | None:
        """Take one of an existing item from stock; `None` if none is left."""
        await asyncio.sleep(LATENCY)
        item = self._items[item_id]
        if item.stock == 0:  # (2)!
            return None
        item.stock -= 1
        return item.model_copy()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, ItemStore]]:
    demo = [Item(id=i, name=f"Item {i}", price=10.99 * i, stock=3) for i in (1, 2, 3)]
    yield {"items": ItemStore(demo)}  # (3)!


async def get_store(request: Request) -> ItemStore:
    return request.state.items


Store = Annotated[ItemStore, Depends(get_store)]
ItemId = Annotated[int, Path(ge=1)]
app = FastAPI(title="A simulated database", lifespan=lifespan)


@app.get("/items")
async def list_items(store: Store) -> list[Item]:
    return await store.all()


@app.get("/items/{item_id}")
async def read_item(item_id: ItemId, store: Store) -> Item:
    if (item := await store.get(item_id)) is None:  # (4)!
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Item not found")
    return item


@app.post("/items/{item_id}/purchase")
async def purchase(item_id: ItemId, store: Store) -> Item:
    if await store.get(item_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Item not found")
    if (item := await store.take_one(item_id)) is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "Out of stock")
    return item
