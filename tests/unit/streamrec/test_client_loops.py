"""An ``AsyncClient`` belongs to the event loop it first ran on (its sender task, queue
and connections live there): used from another loop it says so at once."""

from __future__ import annotations

import asyncio

import pytest

from streamrec.client import ClientClosed
from tests.unit.streamrec.test_client import FakeApi, client_for


def test_a_second_event_loop_gets_client_closed_not_a_hang() -> None:
    # a second asyncio.run with the same client: track queued its event for the sender
    # task of the first loop, which had died with it, and flush waited for ever
    api = FakeApi()
    sr = client_for(api, flush_interval_s=60)

    async def send(item: str) -> None:
        await sr.track("view", user_id="u", item_id=item)
        await sr.flush()

    asyncio.run(send("first"))
    assert len(api.accepted) == 1

    async def again(call: str) -> None:
        calls = {"track": lambda: send("second"), "popular": lambda: sr.popular(3),
                 "close": sr.close}
        await asyncio.wait_for(calls[call](), 5)

    for call in ("track", "popular", "close"):
        with pytest.raises(ClientClosed, match="event loop it first ran on, which has ended"):
            asyncio.run(again(call))
    assert len(api.accepted) == 1
    with pytest.raises(ClientClosed, match="closed"):  # the close above closed it for good
        asyncio.run(sr.popular(3))
