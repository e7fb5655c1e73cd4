import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypedDict

from fastapi import Depends, FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import String, event, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///notes.db")  # (1)!
BUSY_TIMEOUT = 5.0  # seconds a writer waits for another writer to finish
BUSY = ("SQLITE_BUSY", "SQLITE_LOCKED")  # the error codes that mean "try again"
logger = logging.getLogger(__name__)


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(500))


class NewNote(BaseModel):  # (2)!
    text: str = Field(min_length=1, max_length=500, pattern=r"^[^\x00-\x08\x0b-\x1f]+$")


class NoteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    text: str


class State(TypedDict):
    sessions: async_sessionmaker[AsyncSession]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    engine = create_async_engine(DATABASE_URL)  # (3)!

    @event.listens_for(engine.sync_engine, "connect")  # (4)!
    def configure(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")  # (5)!
        cursor.execute("PRAGMA journal_mode = WAL")  # (6)!
        cursor.close()

    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        yield {"sessions": async_sessionmaker(engine)}
    finally:
        await engine.dispose()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.state.sessions.begin() as session:
        yield session


async def invalid_input(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = [{k: e[k] for k in ("type", "loc", "msg")} for e in exc.errors()]
    return JSONResponse({"detail": detail}, status.HTTP_422_UNPROCESSABLE_CONTENT)


async def database_busy(request: Request, exc: OperationalError) -> JSONResponse:
    if not getattr(exc.orig, "sqlite_errorname", "").startswith(BUSY):  # (7)!
        raise exc  # anything else, such as a missing table, is a bug: a 500
    logger.warning("database busy: %s", exc.orig)  # (8)!
    return JSONResponse(
        {"detail": "Database busy, try again"},
        status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "1"},
    )


Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
app = FastAPI(
    title="SQLite, set up for asyncio",
    lifespan=lifespan,
    exception_handlers={
        RequestValidationError: invalid_input,
        OperationalError: database_busy,
    },
)


@app.post("/notes", status_code=status.HTTP_201_CREATED)
async def create_note(new: NewNote, session: Session) -> NoteOut:
    note = Note(text=new.text)
    session.add(note)
    await session.flush()  # (9)!
    return NoteOut.model_validate(note)


@app.get("/notes")
async def list_notes(session: Session) -> list[NoteOut]:
    notes = await session.scalars(select(Note).order_by(Note.id).limit(100))
    return [NoteOut.model_validate(note) for note in notes]
