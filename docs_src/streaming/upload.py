import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import BackgroundTasks, FastAPI, HTTPException, UploadFile, status
from pydantic import BaseModel

UPLOAD_DIR = anyio.Path("uploads")  # relative to the working directory
MAX_BYTES = 1_000_000
CHUNK = 64 * 1024
PROCESS_TIMEOUT = 60.0  # seconds a file may stay on disk for its processing
TOO_LARGE = f"The file is larger than {MAX_BYTES} bytes"
logger = logging.getLogger(__name__)


class Receipt(BaseModel):
    id: str
    filename: str
    size: int


def display_name(filename: str | None) -> str:  # (1)!
    name = (filename or "").replace("\\", "/").rpartition("/")[2]
    return "".join(c for c in name if c.isprintable())[:100] or "upload"


async def process(path: anyio.Path) -> None:
    """Your work on the file: a virus scan, a thumbnail, an import..."""
    logger.info("processed %s: %d bytes", path.name, (await path.stat()).st_size)


async def process_then_delete(path: anyio.Path) -> None:  # (2)!
    try:
        with anyio.fail_after(PROCESS_TIMEOUT):
            await process(path)
    except Exception:
        logger.exception("processing %s failed", path.name)
    finally:
        await path.unlink(missing_ok=True)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await UPLOAD_DIR.mkdir(parents=True, exist_ok=True)
    yield


app = FastAPI(title="Uploads", lifespan=lifespan)


@app.post(
    "/uploads",
    status_code=status.HTTP_202_ACCEPTED,
    max_body_size=MAX_BYTES + CHUNK,  # (3)!
)
async def upload(file: UploadFile, tasks: BackgroundTasks) -> Receipt:
    upload_id = uuid.uuid4().hex
    path = UPLOAD_DIR / upload_id  # (4)!
    size = 0
    out = await anyio.open_file(path, "xb")  # (5)!
    try:
        async with out:
            while chunk := await file.read(CHUNK):  # (6)!
                size += len(chunk)
                if size > MAX_BYTES:
                    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, TOO_LARGE)
                await out.write(chunk)
    except BaseException:  # an error, or the request was cancelled
        with anyio.CancelScope(shield=True):
            await path.unlink(missing_ok=True)  # (7)!
        raise
    tasks.add_task(process_then_delete, path)
    return Receipt(id=upload_id, filename=display_name(file.filename), size=size)
