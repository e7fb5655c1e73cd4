"""What the tutorials wrote, shared by the tests that reproduce their faults."""

from collections.abc import AsyncIterator, Callable

from sqlalchemy.ext.asyncio import AsyncSession


def tutorial_get_db(
    AsyncSessionLocal: Callable[[], AsyncSession],
) -> Callable[[], AsyncIterator[AsyncSession]]:
    """The session dependency the tutorials copy, for the given session factory."""

    # --8<-- [start:get-db]
    async def get_db() -> AsyncIterator[AsyncSession]:
        async with AsyncSessionLocal() as session:
            try:
                yield session
                await session.commit()  # after the route, and after the response
            except Exception:
                await session.rollback()
                raise

    # --8<-- [end:get-db]
    return get_db


# --8<-- [start:async-database-session]
class AsyncDatabaseSession:  # as the tutorial writes it, `init` fixed
    def __init__(self, pool):
        self.pool = pool
        self.conn = None

    async def __aenter__(self):
        self.conn = await self.pool.acquire()
        return self.conn

    async def __aexit__(self, exc_type, exc_val, exc_tb):
        await self.pool.release(self.conn)
        if exc_type is not None:
            await self.conn.rollback()
        return False


# --8<-- [end:async-database-session]
