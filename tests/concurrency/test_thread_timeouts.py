import asyncio
import logging
import threading

import anyio
import anyio.to_thread
import pytest

from docs_src.concurrency import thread_timeouts as snippet
from tests.harness import wait_until

pytestmark = pytest.mark.anyio
DEADLINE = 0.1  # long enough for a busy machine to start the thread
SLOW = 1.0


@pytest.fixture(autouse=True)
def short_work(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    monkeypatch.setattr(snippet, "STEPS", 10)
    monkeypatch.setattr(snippet, "STEP", 0.03)  # 0.3 s of work: 3 deadlines
    caplog.set_level(logging.INFO, logger=snippet.__name__)


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(snippet, "DEADLINE", DEADLINE)
    return snippet.app


# --8<-- [start:thread-trap]
@pytest.mark.parametrize(
    "in_a_thread",
    [
        lambda stop: anyio.to_thread.run_sync(
            snippet.build_report, stop, abandon_on_cancel=True
        ),
        lambda stop: asyncio.to_thread(snippet.build_report, stop),
    ],
    ids=["anyio", "asyncio"],
)
async def test_a_timeout_returns_but_the_thread_works_on(caplog, in_a_thread):
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(DEADLINE):
            await in_a_thread(threading.Event())  # nobody will ever set it

    assert "report finished all 10 steps" not in caplog.messages  # the caller left,
    await wait_until(lambda: "report finished all 10 steps" in caplog.messages)


# --8<-- [end:thread-trap]
# --8<-- [start:thread-fix]
async def test_the_report_route_stops_its_thread(client, caplog):
    response = await client.get("/report")

    assert response.status_code == 504
    assert response.json() == {"detail": f"The report took longer than {DEADLINE} s"}
    await wait_until(lambda: "report stopped" in caplog.text)
    assert "report finished all 10 steps" not in caplog.messages


# --8<-- [end:thread-fix]
async def test_a_report_within_the_deadline(client, monkeypatch):
    monkeypatch.setattr(snippet, "STEPS", 2)
    monkeypatch.setattr(snippet, "STEP", 0.001)
    monkeypatch.setattr(snippet, "DEADLINE", SLOW)

    response = await client.get("/report")

    assert response.json() == {"steps": 2}


# --8<-- [start:fail-after]
async def test_anyio_waits_for_the_thread_unless_told_to_abandon_it(caplog):
    with anyio.fail_after(DEADLINE):  # no TimeoutError, although it ran 3 deadlines
        steps = await anyio.to_thread.run_sync(snippet.build_report, threading.Event())
    assert steps == 10  # the default ignored the cancellation until the thread ended

    stop = threading.Event()
    with pytest.raises(TimeoutError), anyio.fail_after(DEADLINE):
        await anyio.to_thread.run_sync(
            snippet.build_report, stop, abandon_on_cancel=True
        )
    stop.set()  # the thread was abandoned, not stopped: ask it to stop
    await wait_until(lambda: "report stopped" in caplog.text)


# --8<-- [end:fail-after]
