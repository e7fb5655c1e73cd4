import asyncio
import csv
import gc
import io
from types import SimpleNamespace
from typing import Annotated

import pytest
from fastapi import Depends

from docs_src.streaming import csv_export as snippet
from tests.harness import open_stream, running
from tests.streaming.helpers import hang_up_while_sending, tutorial_export

pytestmark = pytest.mark.anyio


@pytest.fixture
def app():
    return snippet.app


class RecordingRepository(snippet.UserRepository):
    """Serves `rows`, records the pages it hands out and when its cursor closes."""

    def __init__(self, rows: list[snippet.Row]) -> None:
        super().__init__(rows)
        self.fetched: list[int] = []  # the first id of each page handed out
        self.closed = False

    async def pages(self, size: int):
        try:
            for start in range(0, len(self.rows), size):
                await asyncio.sleep(0)  # a real query waits for the database here
                self.fetched.append(self.rows[start][0])
                yield self.rows[start : start + size]
        finally:
            self.closed = True


@pytest.fixture
def use(monkeypatch: pytest.MonkeyPatch):
    """Make the export read from the given repository."""

    def use(repository: snippet.UserRepository) -> snippet.UserRepository:
        async def get_users() -> snippet.UserRepository:
            return repository

        overrides = snippet.app.dependency_overrides
        monkeypatch.setitem(overrides, snippet.get_users, get_users)
        return repository

    return use


def users(count: int) -> list[snippet.Row]:
    return [(i, f"User {i}", f"user{i}@example.com") for i in range(1, count + 1)]


# --8<-- [start:export]
async def test_the_export_is_a_csv_attachment(client):
    response = await client.get("/users/export.csv")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="users.csv"'
    assert response.text.startswith(
        "id,name,email\r\n1,User 1,user1@example.com\r\n2,User 2,user2@example.com\r\n"
    )
    assert response.text.count("\r\n") == 1 + 1000  # the header and every user


# --8<-- [end:export]
# --8<-- [start:hostile]
HOSTILE = [  # (name as stored, the line the export writes)
    ("Doe, Jane", '"Doe, Jane"'),  # a comma: quoted
    ('The "Boss"', '"The ""Boss"""'),  # quotes: doubled, then quoted
    ("two\nlines", '"two\nlines"'),  # a newline stays inside the quotes
    ("=1+1", "'=1+1"),  # formulas get a leading apostrophe
    ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
    ("-2+3", "'-2+3"),
    ("+1 555 0100", "'+1 555 0100"),
    ("\t=1+1", "'\t=1+1"),
    ("\r=1+1", '"\'\r=1+1"'),
    ('=HYPERLINK("http://evil.invalid")', '"\'=HYPERLINK(""http://evil.invalid"")"'),
    ("张伟", "张伟"),
]


async def test_cells_are_quoted_and_formulas_neutralised(client, use):
    use(snippet.UserRepository([(1, name, "x@example.com") for name, _ in HOSTILE]))

    response = await client.get("/users/export.csv")

    expected = [f"1,{line},x@example.com\r\n" for _, line in HOSTILE]
    assert response.text == "id,name,email\r\n" + "".join(expected)
    rows = list(csv.reader(io.StringIO(response.text, newline="")))
    assert [name.removeprefix("'") for _, name, _ in rows[1:]] == [  # parsed back
        name for name, _ in HOSTILE
    ]


# --8<-- [end:hostile]
async def test_numbers_are_written_as_numbers(client, use):
    use(snippet.UserRepository([(-1, "-1", "x@example.com")]))

    response = await client.get("/users/export.csv")

    assert response.text.splitlines()[1] == "-1,'-1,x@example.com"  # text is not


async def test_an_empty_table_is_the_header_alone(client, use):
    use(snippet.UserRepository([]))

    response = await client.get("/users/export.csv")

    assert response.text == "id,name,email\r\n"


# --8<-- [start:batches]
async def test_one_chunk_per_page(running_app, use, monkeypatch):
    monkeypatch.setattr(snippet, "BATCH_SIZE", 2)
    users_table = use(RecordingRepository(users(5)))

    async with open_stream(running_app, "/users/export.csv") as stream:
        chunks = [chunk.decode() async for chunk in stream.aiter_bytes()]

    assert [chunk.count("\r\n") for chunk in chunks] == [1, 2, 2, 1]  # header, pages
    assert users_table.fetched == [1, 3, 5]
    assert users_table.closed  # the download finished: the cursor is closed


async def test_pages_are_fetched_as_the_client_reads(running_app, use, monkeypatch):
    monkeypatch.setattr(snippet, "BATCH_SIZE", 2)
    fetched_while_waiting = []
    for chunks in [1, 2, 3, 4]:  # the chunk the app is still trying to send
        users_table = use(RecordingRepository(users(20)))  # 10 pages
        await hang_up_while_sending(running_app, "/users/export.csv", chunks=chunks)
        fetched_while_waiting.append(users_table.fetched)

    assert fetched_while_waiting == [
        [],  # the header waits: no query has run
        [1],  # page 1 waits: page 2 has not been asked for
        [1, 3],
        [1, 3, 5],
    ]


# --8<-- [end:batches]
# --8<-- [start:closed]
async def test_the_cursor_closes_when_a_slow_client_hangs_up(
    running_app, use, monkeypatch
):
    monkeypatch.setattr(snippet, "BATCH_SIZE", 2)
    users_table = use(RecordingRepository(users(20)))

    sent = await hang_up_while_sending(running_app, "/users/export.csv", chunks=2)

    assert sent == [
        b"id,name,email\r\n",
        b"1,User 1,user1@example.com\r\n2,User 2,user2@example.com\r\n",
    ]
    assert users_table.fetched == [1]
    assert users_table.closed  # by the dependency: the export was stuck at `yield`


async def test_without_the_dependency_the_cursor_stays_open(
    running_app, use, monkeypatch
):
    monkeypatch.setattr(snippet, "BATCH_SIZE", 2)
    users_table = use(RecordingRepository(users(20)))

    async def pages_unclosed(
        users: Annotated[snippet.UserRepository, Depends(snippet.get_users)],
    ):
        return users.pages(snippet.BATCH_SIZE)  # handed over, never closed

    overrides = snippet.app.dependency_overrides
    monkeypatch.setitem(overrides, snippet.user_pages, pages_unclosed)
    gc.disable()  # the collector would close it some time later
    try:
        await hang_up_while_sending(running_app, "/users/export.csv", chunks=2)

        assert users_table.fetched == [1]
        assert not users_table.closed

        gc.collect()
        await asyncio.sleep(0.01)
        assert users_table.closed  # only once the garbage collector ran
    finally:
        gc.enable()


# --8<-- [end:closed]
# --8<-- [start:seed]
async def test_what_the_tutorial_export_sends():
    evil = '=HYPERLINK("http://evil.invalid")'
    table = [(1, evil, "u1@example.com"), (2, "Bob", "u2@example.com")]

    async def fetch_users_batch(offset, limit):  # the tutorial leaves it undefined
        return [SimpleNamespace(id=i, name=n, email=e) for i, n, e in table][
            offset : offset + limit
        ]

    tutorial = tutorial_export(fetch_users_batch)
    async with (
        running(tutorial) as started,
        open_stream(started, "/export/users") as stream,
    ):
        chunks = [chunk.decode() async for chunk in stream.aiter_bytes()]

    assert chunks == [
        "ID,Name,Email\r\n",
        '1,"=HYPERLINK(""http://evil.invalid"")",u1@example.com\r\n',  # a live formula
        "2,Bob,u2@example.com\r\n",
    ]  # one chunk per row


# --8<-- [end:seed]
