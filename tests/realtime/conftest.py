"""Fixtures shared by the Real time chapter's tests."""

import pytest

from docs_src.realtime import sse_updates


class RecordedFeed(sse_updates.Feed):
    """The SSE feed the app creates, remembering every instance."""

    created: list[sse_updates.Feed]

    def __init__(self) -> None:
        super().__init__()
        self.created.append(self)


@pytest.fixture
def feeds(monkeypatch: pytest.MonkeyPatch) -> list[sse_updates.Feed]:
    """Every feed the SSE apps create during the test (both share sse_updates.Feed)."""
    monkeypatch.setattr(RecordedFeed, "created", [], raising=False)
    monkeypatch.setattr(sse_updates, "Feed", RecordedFeed)
    return RecordedFeed.created
