import importlib
import warnings
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Router

from tests.harness import running

with warnings.catch_warnings():  # importing it warns; the tests below assert that
    warnings.simplefilter("ignore", DeprecationWarning)
    from docs_src.resources import on_event_legacy

pytestmark = pytest.mark.anyio


# --8<-- [start:deprecated]
@pytest.fixture
def snippet():
    """The snippet imported afresh: each `on_event` decorator warns as it runs."""
    with pytest.warns(DeprecationWarning, match="on_event is deprecated") as warned:
        module = importlib.reload(on_event_legacy)

    source = Path(module.__file__).read_text("utf-8").splitlines()
    decorators = [n for n, line in enumerate(source, 1) if ".on_event(" in line]
    assert len(decorators) == 3
    assert [w.lineno for w in warned if w.filename == module.__file__] == decorators
    return module


async def test_the_handlers_run_once_each(snippet):
    async with running(snippet.app):
        assert snippet.events == ["startup handler"]

    assert snippet.events == ["startup handler", "shutdown handler"]


# --8<-- [end:deprecated]
# --8<-- [start:ignored]
async def test_next_to_a_lifespan_the_handler_never_runs(snippet):
    assert snippet.mixed.router.on_startup == [snippet.never_runs]  # registered...

    async with running(snippet.mixed):  # warnings are errors here: none at startup
        pass

    assert snippet.events == ["lifespan startup", "lifespan shutdown"]
    assert "mixed startup handler" not in snippet.events  # ...but never run


# --8<-- [end:ignored]
# --8<-- [start:starlette]
def test_starlette_has_no_on_event_and_fastapi_keeps_a_deprecated_one():
    assert not hasattr(Starlette, "on_event")
    assert not hasattr(Router, "on_event")
    assert hasattr(FastAPI.on_event, "__deprecated__")


# --8<-- [end:starlette]
