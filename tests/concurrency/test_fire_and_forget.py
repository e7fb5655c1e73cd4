import asyncio
import gc
import logging
import weakref

import httpx
import pytest

from docs_src.concurrency import fire_and_forget as snippet
from tests.harness import app_client, wait_until

pytestmark = pytest.mark.anyio
MAILER_DELAY = 0.2


@pytest.fixture(autouse=True)
def info_logs(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger=snippet.__name__)


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, upstream):
    monkeypatch.setattr(snippet, "UPSTREAM_URL", upstream.url)
    monkeypatch.setattr(snippet, "SHUTDOWN_GRACE", 1.0)
    return snippet.app


def receipt_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("receipt-")]


# --8<-- [start:after-response]
async def test_the_task_finishes_after_the_response(client, upstream, caplog):
    upstream.reply("/receipts", json={}, delay=MAILER_DELAY)

    response = await client.post("/orders/7/confirm")

    assert response.status_code == 202
    assert response.json() == {"order_id": 7, "receipt": "on its way"}
    assert "receipt for order 7 sent" not in caplog.messages  # not yet...
    await wait_until(lambda: "receipt for order 7 sent" in caplog.messages)
    assert upstream.calls["/receipts"] == 1  # ...but it ran to the end
    assert receipt_tasks() == []


async def test_a_failing_task_is_logged_with_its_name(client, upstream, caplog):
    upstream.reply("/receipts", status=503, json={"error": "mailer down"})

    response = await client.post("/orders/8/confirm")

    assert response.status_code == 202  # the client was told before it failed
    await wait_until(lambda: "receipt-8 failed" in caplog.messages)
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "503 Service Unavailable" in str(record.exc_info[1])


# --8<-- [end:after-response]
async def test_with_no_mailer_listening_the_task_failure_is_logged(
    monkeypatch, caplog, unreachable_url
):
    monkeypatch.setattr(snippet, "UPSTREAM_URL", unreachable_url)

    async with app_client(snippet.app) as client:
        response = await client.post("/orders/7/confirm")
        await wait_until(lambda: "receipt-7 failed" in caplog.messages)

    assert response.status_code == 202
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert isinstance(record.exc_info[1], httpx.ConnectError)


# --8<-- [start:shutdown]
async def test_shutdown_waits_for_tasks_that_finish_within_the_grace(
    app, upstream, caplog
):
    upstream.reply("/receipts", json={}, delay=MAILER_DELAY)

    async with app_client(app) as client:
        await client.post("/orders/9/confirm")
    # the lifespan has shut down here

    assert "receipt for order 9 sent" in caplog.messages
    assert upstream.abandoned == []
    assert receipt_tasks() == []


async def test_shutdown_cancels_what_is_left_after_the_grace(
    app, monkeypatch, upstream, caplog
):
    monkeypatch.setattr(snippet, "SHUTDOWN_GRACE", MAILER_DELAY / 2)
    upstream.reply("/receipts", json={}, delay=10 * MAILER_DELAY)

    async with app_client(app) as client:
        await client.post("/orders/10/confirm")

    assert "receipt-10 was cancelled" in caplog.messages
    assert receipt_tasks() == []  # nothing left pending
    await wait_until(lambda: upstream.abandoned == ["/receipts"])


async def test_the_client_closes_after_the_tasks(app, upstream, caplog):
    upstream.reply("/receipts", json={}, delay=MAILER_DELAY)

    async with snippet.lifespan(app) as state:
        work = snippet.send_receipt(state["http"], 11)
        snippet.spawn(state["tasks"], work, name="receipt-11")

    assert "receipt for order 11 sent" in caplog.messages  # sent before the close
    assert state["http"].is_closed


# --8<-- [end:shutdown]
@pytest.mark.parametrize("order_id", ["0", "-1", "abc", "1.5"])
async def test_a_bad_order_id_is_422_and_spawns_nothing(client, order_id):
    response = await client.post(f"/orders/{order_id}/confirm")

    assert response.status_code == 422
    assert receipt_tasks() == []


# --8<-- [start:trap]
async def wait_for_a_reply() -> None:
    await asyncio.get_running_loop().create_future()  # only this task holds it


async def test_a_task_nobody_references_can_vanish_mid_flight(caplog):
    task = asyncio.create_task(wait_for_a_reply())
    alive = weakref.ref(task)
    await asyncio.sleep(0)  # it starts, then waits
    del task  # what `asyncio.create_task(...)` on its own line leaves behind

    gc.collect()

    assert alive() is None  # collected before it finished
    assert "Task was destroyed but it is pending!" in caplog.text


async def test_a_referenced_task_is_kept_until_it_is_done():
    tasks: snippet.Tasks = set()
    snippet.spawn(tasks, wait_for_a_reply(), name="kept")
    alive = weakref.ref(next(iter(tasks)))  # the set holds the only reference
    await asyncio.sleep(0)

    gc.collect()

    task = alive()
    assert task is not None  # still there,
    assert not task.done()  # still waiting
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert tasks == set()  # the done callback let it go


async def test_a_reference_alone_hides_the_failure(caplog):
    async def fail() -> None:
        raise ConnectionError("mailer down")

    kept = {asyncio.create_task(fail())}  # referenced, but no done callback
    await asyncio.sleep(0.01)

    (task,) = kept
    assert task.done()
    assert caplog.records == []  # it failed, and nobody heard
    assert isinstance(task.exception(), ConnectionError)


# --8<-- [end:trap]
