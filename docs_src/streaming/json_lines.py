import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, FastAPI, Path, Query
from pydantic import BaseModel, Field

DELAY = 0.5  # seconds between two ticks of the stand-in feed


class Quote(BaseModel):
    symbol: str
    seq: int
    price: float = Field(gt=0)


class Tick(Quote):
    venue_id: int  # internal: clients never see it


class Subscription:
    """A stand-in for a market data feed, one connection per subscriber."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.ticks = 0
        self.closed = False

    async def next_tick(self) -> Tick:
        await asyncio.sleep(DELAY)  # waiting for the market
        self.ticks += 1
        price = 100 + self.ticks / 4
        return Tick(symbol=self.symbol, seq=self.ticks, price=price, venue_id=7)

    async def close(self) -> None:
        self.closed = True  # a real feed would close its connection here


async def subscribe(
    symbol: Annotated[str, Path(pattern=r"^[A-Z]{1,5}$")],
) -> AsyncIterator[Subscription]:
    subscription = Subscription(symbol)
    try:
        yield subscription
    finally:
        await subscription.close()  # (1)!


app = FastAPI(title="JSON Lines")


@app.get("/quotes/{symbol}")
async def stream_quotes(
    subscription: Annotated[Subscription, Depends(subscribe)],
    count: Annotated[int, Query(ge=1, le=100)] = 5,
) -> AsyncIterator[Quote]:  # (2)!
    for _ in range(count):
        yield await subscription.next_tick()  # (3)!
