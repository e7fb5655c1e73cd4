import logging
import threading
import time

import anyio
import anyio.to_thread
from fastapi import FastAPI, HTTPException, status

DEADLINE = 2.0  # seconds the route waits for the report
STEPS, STEP = 30, 0.1  # the report: 3 s of blocking work in chunks of 0.1 s
logger = logging.getLogger(__name__)
app = FastAPI(title="Timeouts around blocking work")


# --8<-- [start:thread]
def build_report(stop: threading.Event) -> int:
    for step in range(STEPS):
        if stop.is_set():  # (1)!
            logger.info("report stopped after %d of %d steps", step, STEPS)
            return step
        time.sleep(STEP)  # one chunk of blocking work: a query, a file, an SDK call
    logger.info("report finished all %d steps", STEPS)
    return STEPS


@app.get("/report")
async def report() -> dict[str, int]:
    stop = threading.Event()
    try:
        with anyio.fail_after(DEADLINE):
            steps = await anyio.to_thread.run_sync(
                build_report,
                stop,
                abandon_on_cancel=True,  # (2)!
            )
    except TimeoutError:
        detail = f"The report took longer than {DEADLINE} s"
        raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT, detail) from None
    finally:
        stop.set()  # (3)!
    return {"steps": steps}


# --8<-- [end:thread]
