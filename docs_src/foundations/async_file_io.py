from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import anyio
from fastapi import FastAPI, HTTPException, Path, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

NOTES_DIR = anyio.Path("notes")
# An allow-list, not a deny-list: no dots, no slashes, nothing to traverse with.
NoteName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]  # (1)!


class Note(BaseModel):
    content: str = Field(max_length=10_000)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await NOTES_DIR.mkdir(parents=True, exist_ok=True)
    yield


async def invalid_input(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = [{k: e[k] for k in ("type", "loc", "msg")} for e in exc.errors()]
    return JSONResponse({"detail": detail}, status.HTTP_422_UNPROCESSABLE_CONTENT)


app = FastAPI(
    title="Async file I/O",
    lifespan=lifespan,
    exception_handlers={RequestValidationError: invalid_input},  # (3)!
)


@app.get("/notes/{name}")
async def read_note(name: NoteName) -> Note:
    try:
        data = await (NOTES_DIR / f"{name}.txt").read_bytes()  # (2)!
    except FileNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Note not found") from None
    return Note(content=data.decode("utf-8"))


@app.put("/notes/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def write_note(name: NoteName, note: Note) -> None:
    await (NOTES_DIR / f"{name}.txt").write_bytes(note.content.encode("utf-8"))
