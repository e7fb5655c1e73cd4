import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, TypedDict

from fastapi import Body, Depends, FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///users.db")
MAX_BATCH = 100  # users per request


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    email: Mapped[str] = mapped_column(unique=True)
    password_hash: Mapped[str | None]  # set later, when the user picks a password


class UserIn(BaseModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    email: Annotated[str, StringConstraints(max_length=254, pattern=r"^[^@\s]+@\S+$")]


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    email: str


class State(TypedDict):
    sessions: async_sessionmaker[AsyncSession]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    engine = create_async_engine(DATABASE_URL)
    try:
        async with engine.begin() as connection:  # use migrations in production
            await connection.run_sync(Base.metadata.create_all)
        yield {"sessions": async_sessionmaker(engine)}
    finally:
        await engine.dispose()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.state.sessions.begin() as session:  # commits at the end
        yield session


async def invalid_input(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = [{k: e[k] for k in ("type", "loc", "msg")} for e in exc.errors()]
    return JSONResponse({"detail": detail}, status.HTTP_422_UNPROCESSABLE_CONTENT)


Session = Annotated[AsyncSession, Depends(get_session, scope="function")]  # (1)!
Batch = Annotated[list[UserIn], Body(min_length=1, max_length=MAX_BATCH)]  # (2)!
app = FastAPI(
    title="Batch writes",
    lifespan=lifespan,
    exception_handlers={RequestValidationError: invalid_input},
)


@app.post("/users/batch", status_code=status.HTTP_201_CREATED)
async def create_users(users: Batch, session: Session) -> list[UserOut]:
    statement = insert(User).returning(User.id, User.name, User.email)  # (3)!
    try:
        rows = await session.execute(statement, [u.model_dump() for u in users])
    except IntegrityError:  # (4)!
        raise HTTPException(status.HTTP_409_CONFLICT, "Duplicate email") from None
    created = {row.email: row for row in rows}  # (5)!
    return [UserOut.model_validate(created[u.email]) for u in users]
