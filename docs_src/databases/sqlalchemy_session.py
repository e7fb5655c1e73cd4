import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, TypedDict

import anyio.to_thread
from fastapi import Depends, FastAPI, HTTPException, Path, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import String
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///session.db")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))


class UserOut(BaseModel):  # (1)!
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    email: str


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")  # (2)!
    email: str = Field(pattern=r"^[^@\s\x00-\x1f]+@[^@\s\x00-\x1f]+$", max_length=254)
    password: str = Field(min_length=8, max_length=128)


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt${salt.hex()}${digest.hex()}"


class State(TypedDict):
    sessions: async_sessionmaker[AsyncSession]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    engine = create_async_engine(DATABASE_URL)  # (3)!
    try:
        async with engine.begin() as connection:  # (4)!
            await connection.run_sync(Base.metadata.create_all)
        yield {"sessions": async_sessionmaker(engine)}
    finally:
        await engine.dispose()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    try:
        async with request.state.sessions.begin() as session:  # (5)!
            yield session
    except IntegrityError:  # a constraint that only failed at the commit
        raise HTTPException(
            status.HTTP_409_CONFLICT, "Conflicts with stored data"
        ) from None


async def invalid_input(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = [{k: e[k] for k in ("type", "loc", "msg")} for e in exc.errors()]
    return JSONResponse({"detail": detail}, status.HTTP_422_UNPROCESSABLE_CONTENT)


Session = Annotated[AsyncSession, Depends(get_session, scope="function")]  # (6)!
app = FastAPI(
    title="SQLAlchemy: a session per request",
    lifespan=lifespan,
    exception_handlers={RequestValidationError: invalid_input},
)


@app.post("/users", status_code=status.HTTP_201_CREATED)
async def create_user(new: NewUser, session: Session) -> UserOut:
    password_hash = await anyio.to_thread.run_sync(hash_password, new.password)  # (7)!
    user = User(name=new.name, email=new.email, password_hash=password_hash)
    session.add(user)
    try:
        await session.flush()  # (8)!
    except IntegrityError:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "Email already registered"
        ) from None
    return UserOut.model_validate(user)


UserId = Annotated[int, Path(ge=1, le=2**31 - 1)]  # (9)!


@app.get("/users/{user_id}")
async def read_user(user_id: UserId, session: Session) -> UserOut:
    if (user := await session.get(User, user_id)) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "User not found")
    return UserOut.model_validate(user)
