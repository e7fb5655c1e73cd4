import asyncio
import gc
import re
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import mongomock
import pytest
from bson import ObjectId
from bson.errors import InvalidId
from fastapi import FastAPI, HTTPException, Request
from pydantic import ValidationError
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import InvalidOperation, ServerSelectionTimeoutError

from docs_src.databases import mongodb as snippet
from tests.harness import (
    app_client,
    client_for,
    logged_exceptions,
    run_concurrently,
    timed,
)

pytestmark = pytest.mark.anyio
NOTE = {"slug": "hello", "title": "Hello"}
OBJECT_ID = re.compile(r"[0-9a-f]{24}")


# --8<-- [start:mongomock]
class AsyncAdapter:
    """PyMongo's async methods over a mongomock collection, which is synchronous:
    every method becomes a coroutine function that returns what mongomock returns."""

    def __init__(self, collection: mongomock.Collection) -> None:
        self.collection = collection

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.collection, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call


def in_memory() -> AsyncAdapter:
    return AsyncAdapter(mongomock.MongoClient()[snippet.DATABASE]["documents"])


# --8<-- [end:mongomock]
def mongodb_url(unreachable_url: str) -> str:
    """The conftest's closed port on 127.0.0.1, as a MongoDB URL."""
    return "mongodb://" + unreachable_url.removeprefix("http://")


@pytest.fixture(
    params=["mongomock", pytest.param("server", marks=pytest.mark.service("mongodb"))]
)
async def documents(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, unreachable_url
) -> AsyncIterator[Any]:
    """The collection the routes store into, with the unique index in place.

    `mongomock`: an in-memory imitation, handed to the routes in place of the real
    collection. `server`: a real MongoDB (`MONGODB_URL`), a database of its own for
    each test, dropped afterwards; seen here through a client of our own.
    """
    if request.param == "mongomock":
        collection = in_memory()
        monkeypatch.setattr(snippet, "MONGODB_URL", mongodb_url(unreachable_url))
        overrides = snippet.app.dependency_overrides
        monkeypatch.setitem(overrides, snippet.get_documents, lambda: collection)
        await snippet.create_indexes(collection)
        yield collection
        return
    url = request.getfixturevalue("mongodb_url")
    monkeypatch.setattr(snippet, "MONGODB_URL", url)
    monkeypatch.setattr(snippet, "DATABASE", f"test_{uuid4().hex}")
    await snippet.main()  # what a deployment runs once
    async with AsyncMongoClient(url) as client:
        try:
            yield client[snippet.DATABASE]["documents"]
        finally:
            await client.drop_database(snippet.DATABASE)


@pytest.fixture
def app(documents) -> FastAPI:
    return snippet.app


@pytest.fixture
def unreachable(monkeypatch: pytest.MonkeyPatch, unreachable_url) -> Iterator[FastAPI]:
    """The app with the real client, pointed at a port where no MongoDB listens."""
    monkeypatch.setattr(snippet, "MONGODB_URL", mongodb_url(unreachable_url))
    monkeypatch.setattr(snippet, "SERVER_SELECTION_TIMEOUT_MS", 200)
    yield snippet.app
    # PyMongo 4.20 does not close the socket of a connection attempt that
    # `client.close()` cancels (PYTHON-5867); collect it here, quietly, or its
    # ResourceWarning fails whichever test runs when the garbage collector does.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "unclosed <socket", ResourceWarning)
        gc.collect()


# --8<-- [start:crud]
async def test_create_then_read_a_document(client, documents):
    created = await client.post("/documents", json=NOTE)
    document_id = created.json()["id"]
    found = await client.get(f"/documents/{document_id}")

    assert created.status_code == 201
    assert created.json() == {"id": document_id}
    assert OBJECT_ID.fullmatch(document_id)
    assert (found.status_code, found.json()) == (200, {"id": document_id, **NOTE})
    stored = await documents.find_one({})  # the database's view, not the app's
    assert stored == {"_id": ObjectId(document_id), **NOTE}
    unknown = await client.get(f"/documents/{ObjectId()}")
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "Document not found"}


async def test_a_stored_document_without_a_title_is_a_500(running_app, documents):
    written = await documents.insert_one({"slug": "legacy"})  # by another program
    path = f"/documents/{written.inserted_id}"
    async with client_for(running_app) as client:
        with pytest.raises(ValidationError, match="title\n  Field required"):
            await client.get(path)
    async with client_for(running_app, raise_app_exceptions=False) as client:
        response = await client.get(path)

    assert (response.status_code, response.text) == (500, "Internal Server Error")


async def test_a_duplicate_slug_is_a_409(client, documents):
    first = await client.post("/documents", json=NOTE)
    second = await client.post("/documents", json={**NOTE, "title": "Again"})

    assert first.status_code == 201
    assert second.status_code == 409
    assert second.json() == {"detail": "Slug already taken"}
    assert await documents.count_documents({}) == 1


# --8<-- [end:crud]
# --8<-- [start:validation]
async def test_bad_input_is_a_422_before_the_database_is_asked(unreachable, caplog):
    bodies = [
        {"_id": "chosen", **NOTE},  # the client does not choose the key
        {**NOTE, "is_admin": True},  # nor add fields of its own
        {"slug": "hello"},
        {**NOTE, "slug": "Not a slug"},
        {**NOTE, "title": ""},
        [NOTE],
    ]
    bad_ids = ["abc", "chosen", "0" * 23, "0" * 25, "g" * 24]

    async with app_client(unreachable) as client:
        for body in bodies:
            response = await client.post("/documents", json=body)
            assert response.status_code == 422, body
            detail = response.json()["detail"]
            assert all(set(error) == {"type", "loc", "msg"} for error in detail)
        for bad_id in bad_ids:
            response = await client.get(f"/documents/{bad_id}")
            assert response.status_code == 422, bad_id

    assert logged_exceptions(caplog, snippet.logger) == []  # no server was asked


async def test_without_the_pattern_a_malformed_id_is_a_500():
    collection = in_memory()
    unchecked = FastAPI()

    @unchecked.get("/documents/{doc_id}")
    async def get_document(doc_id: str) -> None:  # the id converted, not checked
        await collection.find_one({"_id": ObjectId(doc_id)})

    async with client_for(unchecked) as client:
        with pytest.raises(InvalidId, match="'abc' is not a valid ObjectId"):
            await client.get("/documents/abc")
    async with client_for(unchecked, raise_app_exceptions=False) as client:
        response = await client.get("/documents/abc")

    assert response.status_code == 500


# --8<-- [end:validation]
# --8<-- [start:unreachable]
async def test_an_unreachable_server_is_a_quick_503(unreachable, caplog):
    async with app_client(unreachable) as client:
        (created, create_seconds), (found, find_seconds) = await asyncio.gather(
            timed(client.post("/documents", json=NOTE)),
            timed(client.get(f"/documents/{ObjectId()}")),
        )

    for response in (created, found):
        assert response.status_code == 503
        assert response.json() == {"detail": "Database unavailable"}
    for seconds in (create_seconds, find_seconds):
        assert 0.2 <= seconds < 2  # the selection timeout, not PyMongo's 30 s
    assert logged_exceptions(caplog, snippet.logger) == [
        ServerSelectionTimeoutError,
        ServerSelectionTimeoutError,
    ]


# --8<-- [end:unreachable]
# --8<-- [start:lifespan]
async def test_one_client_closed_at_shutdown(monkeypatch, unreachable):
    seen: list[Any] = []  # the collection each request was given

    async def spy(request: Request) -> Any:
        seen.append(await snippet.get_documents(request))
        return seen[-1]

    monkeypatch.setitem(unreachable.dependency_overrides, snippet.get_documents, spy)
    async with app_client(unreachable) as client:
        await run_concurrently(3, lambda: client.get(f"/documents/{ObjectId()}"))

    assert len(seen) == 3
    assert len({id(collection.database.client) for collection in seen}) == 1
    with pytest.raises(InvalidOperation, match="after close"):
        await seen[0].find_one({})


# --8<-- [end:lifespan]
# --8<-- [start:migration]
async def test_the_pymongo_column_of_the_migration_table(unreachable):
    async with snippet.connect() as client:  # `async with AsyncMongoClient(url)`
        collection = client[snippet.DATABASE]["documents"]
        assert isinstance(collection, AsyncCollection)
        with pytest.raises(ValueError, match="length must be greater than 0"):
            await collection.find({}).to_list(0)  # refused before any I/O
        with pytest.raises(ServerSelectionTimeoutError):
            await collection.find({}).to_list(None)  # accepted: it asked the server

    with pytest.raises(InvalidOperation, match="after close"):
        await collection.find_one({})  # leaving the block closed the client


# --8<-- [end:migration]
async def test_creating_the_indexes_needs_the_server(unreachable):
    with pytest.raises(ServerSelectionTimeoutError):
        await snippet.main()  # what `python -m docs_src.databases.mongodb` runs


# --8<-- [start:seed]
def tutorial_app(collection: Any) -> FastAPI:
    tutorial = FastAPI()
    db = SimpleNamespace(collection=collection)  # as `mongo_client.mydatabase`

    @tutorial.get("/documents/{doc_id}")
    async def get_document(doc_id: str):
        document = await db.collection.find_one({"_id": doc_id})
        if not document:
            raise HTTPException(status_code=404, detail="Document not found")
        return document

    @tutorial.post("/documents")
    async def create_document(data: dict):
        result = await db.collection.insert_one(data)
        return {"id": str(result.inserted_id)}

    return tutorial


async def test_the_tutorial_never_finds_what_it_created():
    async with client_for(tutorial_app(in_memory())) as client:
        created = await client.post("/documents", json=NOTE)
        found = await client.get(f"/documents/{created.json()['id']}")

    assert created.status_code == 200
    assert OBJECT_ID.fullmatch(created.json()["id"])  # stored as an ObjectId
    assert found.status_code == 404  # looked up as a str


async def test_the_tutorial_stores_whatever_it_is_sent():
    body = {"_id": "chosen", "is_admin": True}
    async with client_for(tutorial_app(in_memory())) as client:
        created = await client.post("/documents", json=body)
        found = await client.get("/documents/chosen")

    assert created.json() == {"id": "chosen"}  # the client chose the key
    assert found.json() == body  # and made itself an admin


async def test_the_tutorial_client_waits_30_seconds_for_a_server():
    client = AsyncMongoClient("mongodb://localhost:27017")  # no timeout given

    assert client.options.server_selection_timeout == 30
    await client.close()


# --8<-- [end:seed]
