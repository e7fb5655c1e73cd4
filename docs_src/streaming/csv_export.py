import asyncio
import csv
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import StreamingResponse

BATCH_SIZE = 500  # rows per query, and rows per chunk sent
# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
Row = tuple[int, str, str]  # id, name, email


class UserRepository:
    """A stand-in for a users table, read one page at a time."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows

    async def pages(self, size: int) -> AsyncGenerator[list[Row], None]:
        for start in range(0, len(self.rows), size):
            await asyncio.sleep(0)  # a real query waits for the database here
            yield self.rows[start : start + size]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, UserRepository]]:
    demo = [(i, f"User {i}", f"user{i}@example.com") for i in range(1, 1001)]
    yield {"users": UserRepository(demo)}


async def get_users(request: Request) -> UserRepository:
    return request.state.users


async def user_pages(
    users: Annotated[UserRepository, Depends(get_users)],
) -> AsyncIterator[AsyncGenerator[list[Row], None]]:
    async with aclosing(users.pages(BATCH_SIZE)) as pages:  # (1)!
        yield pages


Pages = Annotated[AsyncGenerator[list[Row], None], Depends(user_pages)]
app = FastAPI(title="CSV export", lifespan=lifespan)


def cell(value: int | str) -> int | str:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return f"'{value}"  # (2)!
    return value


class Echo:
    """A file for `csv.writer` that hands back each line instead of storing it."""

    def write(self, line: str) -> str:
        return line


async def csv_chunks(pages: AsyncIterator[list[Row]]) -> AsyncIterator[str]:
    writer = csv.writer(Echo())  # (3)!
    yield writer.writerow(["id", "name", "email"])
    async for page in pages:  # (4)!
        yield "".join(writer.writerow([cell(v) for v in row]) for row in page)


@app.get("/users/export.csv")
async def export_users(pages: Pages) -> StreamingResponse:
    return StreamingResponse(
        csv_chunks(pages),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="users.csv"'},  # (5)!
    )
