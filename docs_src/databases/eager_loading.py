# --8<-- [start:models]
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, TypedDict

from fastapi import Depends, FastAPI, HTTPException, Path, Request, status
from pydantic import BaseModel, ConfigDict
from sqlalchemy import ForeignKey, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    joinedload,
    mapped_column,
    relationship,
    selectinload,
)

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///blog.db")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    password_hash: Mapped[str]


class Post(Base):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    author: Mapped[User] = relationship(lazy="raise")  # (1)!
    comments: Mapped[list["Comment"]] = relationship(
        lazy="raise", order_by="Comment.id"
    )


class Comment(Base):
    __tablename__ = "comments"
    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str]
    author: Mapped[User] = relationship(lazy="raise")


class UserOut(BaseModel):  # (2)!
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str


class CommentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    body: str
    author: UserOut


class PostOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    title: str
    author: UserOut
    comments: list[CommentOut]


# --8<-- [end:models]
# --8<-- [start:route]
class State(TypedDict):
    sessions: async_sessionmaker[AsyncSession]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    engine = create_async_engine(DATABASE_URL)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        yield {"sessions": async_sessionmaker(engine)}
    finally:
        await engine.dispose()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.state.sessions() as session:
        yield session


Session = Annotated[AsyncSession, Depends(get_session, scope="function")]  # (1)!
PostId = Annotated[int, Path(ge=1, le=2**31 - 1)]  # (2)!
app = FastAPI(title="Eager loading", lifespan=lifespan)


@app.get("/posts/{post_id}")
async def read_post(post_id: PostId, session: Session) -> PostOut:
    query = (
        select(Post)
        .where(Post.id == post_id)
        .options(
            joinedload(Post.author),  # (3)!
            selectinload(Post.comments).joinedload(Comment.author),  # (4)!
        )
    )
    if (post := await session.scalar(query)) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Post not found")
    return PostOut.model_validate(post)  # (5)!


# --8<-- [end:route]
