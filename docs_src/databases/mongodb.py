import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypedDict

from bson import ObjectId
from fastapi import Depends, FastAPI, HTTPException, Path, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConnectionFailure, DuplicateKeyError

MONGODB_URL = os.environ.get("MONGODB_URL", "mongodb://localhost:27017")
DATABASE = "app"
SERVER_SELECTION_TIMEOUT_MS = 2000  # how long to look for a server before a 503
logger = logging.getLogger(__name__)
Collection = AsyncCollection[dict[str, Any]]


class State(TypedDict):
    documents: Collection


def connect() -> AsyncMongoClient[dict[str, Any]]:
    return AsyncMongoClient(  # (1)!
        MONGODB_URL, serverSelectionTimeoutMS=SERVER_SELECTION_TIMEOUT_MS
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    client = connect()
    try:
        yield {"documents": client[DATABASE]["documents"]}
    finally:
        await client.close()  # (2)!


async def get_documents(request: Request) -> Collection:
    return request.state.documents


Documents = Annotated[Collection, Depends(get_documents)]  # (3)!


async def create_indexes(documents: Collection) -> None:  # (4)!
    await documents.create_index("slug", unique=True)


async def main() -> None:  # python -m docs_src.databases.mongodb
    async with connect() as client:
        await create_indexes(client[DATABASE]["documents"])


async def invalid_input(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = [{k: e[k] for k in ("type", "loc", "msg")} for e in exc.errors()]
    return JSONResponse({"detail": detail}, status.HTTP_422_UNPROCESSABLE_CONTENT)


async def unavailable(request: Request, exc: ConnectionFailure) -> JSONResponse:
    logger.warning("MongoDB is unreachable", exc_info=exc)
    return JSONResponse(
        {"detail": "Database unavailable"}, status.HTTP_503_SERVICE_UNAVAILABLE
    )


app = FastAPI(
    title="MongoDB with PyMongo",
    lifespan=lifespan,
    exception_handlers={
        RequestValidationError: invalid_input,
        ConnectionFailure: unavailable,  # (5)!
    },
)


class NewDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")  # (6)!
    slug: str = Field(pattern=r"^[a-z0-9-]{1,64}$")
    title: str = Field(min_length=1, max_length=200)


class Document(BaseModel):
    id: str
    slug: str
    title: str


class Created(BaseModel):
    id: str


DocumentId = Annotated[str, Path(pattern=r"^[0-9a-f]{24}$")]  # (7)!


@app.post("/documents", status_code=status.HTTP_201_CREATED)
async def create_document(new: NewDocument, documents: Documents) -> Created:
    try:
        result = await documents.insert_one(new.model_dump())
    except DuplicateKeyError:
        raise HTTPException(status.HTTP_409_CONFLICT, "Slug already taken") from None
    return Created(id=str(result.inserted_id))


@app.get("/documents/{document_id}")
async def read_document(document_id: DocumentId, documents: Documents) -> Document:
    found = await documents.find_one({"_id": ObjectId(document_id)})  # (8)!
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Document not found")
    return Document.model_validate({**found, "id": str(found["_id"])})  # (9)!


if __name__ == "__main__":
    asyncio.run(main())
