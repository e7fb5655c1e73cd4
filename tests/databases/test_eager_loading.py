import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import ResponseValidationError
from sqlalchemy import Engine, ForeignKey, delete, event, insert, select
from sqlalchemy.exc import (
    DBAPIError,
    InvalidRequestError,
    MissingGreenlet,
    MultipleResultsFound,
    StatementError,
)
from sqlalchemy.ext.asyncio import (
    AsyncAttrs,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from docs_src.databases import eager_loading as snippet
from docs_src.databases.eager_loading import Comment, Post, PostOut, User
from tests.databases.rows import create_rows
from tests.harness import client_for, running

pytestmark = pytest.mark.anyio
USERS = ["ada", "bob", "cy"]
POSTS = [("Hello", 1), ("Async tips", 2), ("Quiet", 3)]  # (title, author_id)
COMMENTS = [(1, 2, "Nice"), (2, 1, "Thanks"), (2, 3, "+1"), (1, 3, "Agreed")]
# (post_id, author_id, body)


async def seed(url: str) -> None:
    """Three authors, three posts, and comments on the first two."""
    await create_rows(
        url,
        snippet.Base.metadata,
        (User, [{"name": n, "password_hash": "s3cret"} for n in USERS]),
        (Post, [{"title": t, "author_id": a} for t, a in POSTS]),
        (Comment, [{"post_id": p, "author_id": a, "body": b} for p, a, b in COMMENTS]),
    )


@pytest.fixture
async def seeded_url(sqlalchemy_url: str) -> str:
    """`sqlalchemy_url`, with the tables made and the rows above in them."""
    await seed(sqlalchemy_url)
    return sqlalchemy_url


@pytest.fixture
async def engine(seeded_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine of the test's own on the seeded database, disposed afterwards."""
    engine = create_async_engine(seeded_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, seeded_url: str) -> FastAPI:
    monkeypatch.setattr(snippet, "DATABASE_URL", seeded_url)
    return snippet.app


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """The SQL statements sent to the database while the test runs (any engine)."""
    sent: list[str] = []

    def record(connection, cursor, statement, *_) -> None:
        sent.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    yield sent
    event.remove(Engine, "before_cursor_execute", record)


# --8<-- [start:post]
async def test_the_post_its_own_author_and_only_its_comments(client):
    response = await client.get("/posts/2")

    assert response.status_code == 200
    assert response.json() == {
        "id": 2,
        "title": "Async tips",
        "author": {"id": 2, "name": "bob"},  # no password_hash
        "comments": [
            {"id": 2, "body": "Thanks", "author": {"id": 1, "name": "ada"}},
            {"id": 3, "body": "+1", "author": {"id": 3, "name": "cy"}},
        ],
    }
    first = (await client.get("/posts/1")).json()
    assert first["author"] == {"id": 1, "name": "ada"}
    assert [c["body"] for c in first["comments"]] == ["Nice", "Agreed"]
    assert (await client.get("/posts/3")).json()["comments"] == []


async def test_unknown_post_is_404_and_bad_ids_are_422(client):
    response = await client.get("/posts/999")
    assert response.status_code == 404
    assert response.json() == {"detail": "Post not found"}

    for bad in ["0", "-1", "abc", "1.5", str(2**31), str(2**63)]:
        response = await client.get(f"/posts/{bad}")

        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["path", "post_id"]


# --8<-- [end:post]
DRIVER_ERRORS = {
    "postgresql": (DBAPIError, r"\(value out of int32 range\)"),  # from asyncpg
    "sqlite": (OverflowError, "Python int too large to convert to SQLite INTEGER"),
}


async def test_without_the_bound_a_big_id_is_a_500(seeded_url, backend):
    error, message = DRIVER_ERRORS[backend]
    async with running(lazy_app(seeded_url)) as app:  # post_id: int, no bounds
        async with client_for(app) as client:
            with pytest.raises(error, match=message):
                await client.get(f"/posts/{2**63}")
        async with client_for(app, raise_app_exceptions=False) as client:
            response = await client.get(f"/posts/{2**63}")

    assert response.status_code == 500
    assert response.text == "Internal Server Error"


# --8<-- [start:count]
async def test_two_statements_however_many_comments(client, engine, statements):
    async with engine.begin() as connection:  # 20 comments on post 3, 20 authors
        ids = await connection.scalars(
            insert(User).returning(User.id),
            [{"name": f"reader {i}", "password_hash": "x"} for i in range(20)],
        )
        await connection.execute(
            insert(Comment), [{"post_id": 3, "author_id": i, "body": "hi"} for i in ids]
        )
    comments, sent = {}, {}

    for post_id in [1, 2, 3, 999]:
        statements.clear()
        response = await client.get(f"/posts/{post_id}")
        comments[post_id] = len(response.json().get("comments", []))
        sent[post_id] = len(statements)

    assert comments == {1: 2, 2: 2, 3: 20, 999: 0}
    assert sent == {1: 2, 2: 2, 3: 2, 999: 1}  # post + author, then the comments


# --8<-- [end:count]
# --8<-- [start:raise]
async def test_a_relationship_not_loaded_raises_at_once(engine):
    async with AsyncSession(engine) as session:
        post = await session.get(Post, 2)  # no loader options

        with pytest.raises(
            InvalidRequestError, match=r"'Post\.comments' is not available"
        ):
            post.comments  # noqa: B018 (the access is the test)


# --8<-- [end:raise]
# --8<-- [start:lazy-models]
class LazyBase(AsyncAttrs, DeclarativeBase):
    pass


class LazyUser(LazyBase):  # the same tables, mapped as most tutorials map them
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    password_hash: Mapped[str]


class LazyPost(LazyBase):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    author: Mapped[LazyUser] = relationship()  # lazy="select", the default
    comments: Mapped[list["LazyComment"]] = relationship(order_by="LazyComment.id")


class LazyComment(LazyBase):
    __tablename__ = "comments"
    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str]
    author: Mapped[LazyUser] = relationship()


# --8<-- [end:lazy-models]
# --8<-- [start:missing-greenlet]
# SQLAlchemy 2.1 + aiosqlite: a MissingGreenlet leaves a coroutine never awaited.
LEFT_OVER = "ignore:coroutine 'Connection.cursor' was never awaited:RuntimeWarning"


def raises_missing_greenlet(backend: str) -> pytest.RaisesExc:
    """PostgreSQL raises MissingGreenlet; aiosqlite wraps it in a StatementError."""
    if backend == "postgresql":
        return pytest.raises(
            MissingGreenlet, match="greenlet_spawn has not been called"
        )
    return pytest.raises(
        StatementError, check=lambda error: type(error.orig) is MissingGreenlet
    )


@pytest.mark.filterwarnings(LEFT_OVER)
async def test_touching_a_lazy_relationship_raises_missing_greenlet(engine, backend):
    async with AsyncSession(engine) as session:
        post = await session.get(LazyPost, 2)

        with raises_missing_greenlet(backend):
            post.comments  # noqa: B018 (a lazy load: I/O without await)
    gc.collect()


def app_on(url: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict]:
        engine = create_async_engine(url)
        yield {"sessions": async_sessionmaker(engine)}
        await engine.dispose()

    return FastAPI(lifespan=lifespan)


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.state.sessions() as session:
        yield session


Db = Annotated[AsyncSession, Depends(get_db)]


def lazy_app(url: str) -> FastAPI:
    app = app_on(url)

    @app.get("/posts/{post_id}")
    async def read_post(post_id: int, db: Db) -> PostOut:
        return await db.get(LazyPost, post_id)  # serialised after the return

    return app


@pytest.mark.filterwarnings(LEFT_OVER)
async def test_serialising_a_lazy_post_is_a_500(seeded_url):
    async with running(lazy_app(seeded_url)) as app:
        async with client_for(app) as client:
            with pytest.raises(ResponseValidationError) as raised:
                await client.get("/posts/2")
        async with client_for(app, raise_app_exceptions=False) as client:
            response = await client.get("/posts/2")

    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    errors = raised.value.errors()
    assert [e["loc"] for e in errors] == [
        ("response", "author"),
        ("response", "comments"),
    ]
    assert all("MissingGreenlet" in e["msg"] for e in errors)
    del raised, errors
    gc.collect()


# --8<-- [end:missing-greenlet]
# --8<-- [start:expired]
@pytest.mark.filterwarnings(LEFT_OVER)
async def test_a_commit_expires_what_was_loaded(engine, backend):
    async with AsyncSession(engine) as session:  # expire_on_commit=True
        post = await session.get(Post, 2)
        await session.commit()

        with raises_missing_greenlet(backend):
            post.title  # noqa: B018 (expired: reading it would reload it)
        await session.refresh(post)  # reloaded, with an await
        assert post.title == "Async tips"

    async with AsyncSession(engine, expire_on_commit=False) as session:
        post = await session.get(Post, 2)
        await session.commit()

        assert post.title == "Async tips"
    gc.collect()


# --8<-- [end:expired]
# --8<-- [start:awaitable-attrs]
async def test_awaitable_attrs_work_one_query_at_a_time(engine, statements):
    async with AsyncSession(engine) as session:
        statements.clear()
        post = await session.get(LazyPost, 2)
        author = await post.awaitable_attrs.author
        comments = await post.awaitable_attrs.comments
        commenters = [await c.awaitable_attrs.author for c in comments]

    assert author.name == "bob"
    assert [user.name for user in commenters] == ["ada", "cy"]
    assert len(statements) == 5  # post, author, comments, then one per commenter


# --8<-- [end:awaitable-attrs]
# --8<-- [start:seed]
def tutorial_app(url: str) -> FastAPI:
    app = app_on(url)

    @app.get("/posts/{post_id}")  # as widely copied, but one query after the other
    async def get_post_with_relations(post_id: int, db: Db):
        post = await db.get(Post, post_id)
        comments = await db.execute(select(Comment).where(Comment.post_id == post_id))
        author = await db.execute(select(User).where(User.id == Post.author_id))
        return {
            "post": post,
            "comments": comments.scalars().all(),
            "author": author.scalar_one(),
        }

    return app


async def test_the_tutorial_author_query_ignores_the_post(seeded_url, engine):
    async with running(tutorial_app(seeded_url)) as app, client_for(app) as client:
        for post_id in [2, 999]:  # three posts, so three "authors"
            with pytest.raises(MultipleResultsFound):
                await client.get(f"/posts/{post_id}")
        async with engine.begin() as connection:  # leave only ada's post
            await connection.execute(delete(Comment))
            await connection.execute(delete(Post).where(Post.id > 1))
        response = await client.get("/posts/999")

    assert response.status_code == 200  # no 404
    assert response.json() == {
        "post": None,
        "comments": [],
        "author": {"id": 1, "name": "ada", "password_hash": "s3cret"},
    }
    sql = str(select(User).where(User.id == Post.author_id))
    assert "FROM users, posts" in sql
    assert "post_id" not in sql


# --8<-- [end:seed]
