"""Test data: tables made and rows inserted through an engine of the test's own."""

from typing import Any

from sqlalchemy import MetaData, insert
from sqlalchemy.ext.asyncio import create_async_engine


async def create_rows(
    url: str, metadata: MetaData, *rows: tuple[type[Any], list[dict[str, Any]]]
) -> None:
    """Create the tables of `metadata` at `url`, then insert each `(model, rows)`."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
            for model, values in rows:
                await connection.execute(insert(model), values)
    finally:
        await engine.dispose()
