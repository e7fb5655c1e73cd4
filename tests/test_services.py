"""The real servers that service-backed chapters use, when their URLs are set.

Locally these skip with a reason; CI sets DATABASE_URL, REDIS_URL and
REQUIRE_SERVICES, so a server it cannot reach fails the run instead.
"""

import asyncpg
import pytest
import redis.asyncio as redis

pytestmark = pytest.mark.anyio


@pytest.mark.service("postgres")
async def test_postgres_answers(database_url):
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        assert await connection.fetchval("SELECT 1 + 1") == 2
    finally:
        await connection.close()


@pytest.mark.service("redis")
async def test_redis_answers(redis_url):
    client = redis.from_url(redis_url)
    try:
        assert await client.ping() is True
    finally:
        await client.aclose()
