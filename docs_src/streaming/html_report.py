import asyncio
import logging
from collections.abc import AsyncIterator
from html import escape
from typing import Annotated, Literal

from fastapi import FastAPI, HTTPException, Path, Query, status
from fastapi.responses import StreamingResponse

logger = logging.getLogger(__name__)
Section = Literal["users", "orders", "analytics"]
SECTIONS: tuple[Section, ...] = ("users", "orders", "analytics")
Row = dict[str, str]  # column -> value
# A stand-in for a database: the reports' titles, and their rows by section.
TITLES = {1: "Weekly report"}
ROWS: dict[tuple[int, Section], list[Row]] = {
    (1, "users"): [{"name": "Ann", "role": "admin"}],
    (1, "orders"): [{"order": "A-1", "total": "12.50"}],
    (1, "analytics"): [{"metric": "visits", "value": "42"}],
}


async def fetch_title(report_id: int) -> str | None:
    await asyncio.sleep(0)  # a real query waits for the database here
    return TITLES.get(report_id)


async def fetch_rows(report_id: int, section: Section) -> list[Row]:
    await asyncio.sleep(0)
    return ROWS.get((report_id, section), [])


# --8<-- [start:render]
def table(rows: list[Row]) -> str:
    html = "<table>"
    for row in rows:
        cells = (
            f'<td data-label="{escape(k)}">{escape(v)}</td>'  # (1)!
            for k, v in row.items()
        )
        html += "<tr>" + "".join(cells) + "</tr>"
    return html + "</table>\n"


async def render(
    report_id: int, title: str, sections: tuple[Section, ...]
) -> AsyncIterator[str]:
    yield f"<!doctype html>\n<title>{escape(title)}</title>\n<h1>{escape(title)}</h1>\n"
    try:
        for section in sections:
            rows = await fetch_rows(report_id, section)
            yield f"<h2>{section.title()}</h2>\n" + table(rows)
    except Exception:
        logger.exception("report %d failed after the first byte", report_id)
        yield '<p class="error">Report incomplete: an error occurred.</p>\n'  # (2)!
        raise  # (3)!
    yield "<footer>End of report</footer>\n"  # (4)!


# --8<-- [end:render]


app = FastAPI(title="Streamed HTML report")


# --8<-- [start:route]
@app.get("/reports/{report_id}")
async def report(
    report_id: Annotated[int, Path(ge=1)],
    section: Annotated[tuple[Section, ...], Query(max_length=3)] = SECTIONS,
) -> StreamingResponse:
    try:
        title = await fetch_title(report_id)  # (1)!
    except Exception:
        logger.exception("report %d: the store failed", report_id)
        detail = "Report store unavailable"
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail) from None
    if title is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Report not found")
    body = render(report_id, title, section)  # (2)!
    return StreamingResponse(body, media_type="text/html")


# --8<-- [end:route]
