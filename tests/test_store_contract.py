"""One contract, every store: the same cases against memory, SQLite on disk and a real Redis.

``app/backends/base.py`` states what a store promises (consecutive seqs, the
idempotency of a user's ``clientId``, ``clear``, the history window, ``since``
never answering with a gap, bot states, surviving a reopen where it is durable).
The hub relies on exactly that and nothing more, so every backend is held to it
here through its public interface, with no server in between.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from app.backends.base import Record, SharedStore, Store
from app.backends.memory import MemoryStore
from app.backends.redis import RedisStore
from app.backends.sqlite import SqliteStore
from app.core import Draft

KINDS = ["memory", "sqlite", "redis"]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        request.getfixturevalue("redis_url")  # skipped loudly (failed under CI) without Redis
    return str(request.param)


@pytest.fixture
def place(kind: str, tmp_path: Path) -> str:
    """Where a store of this kind keeps its data: the same place across reopens."""
    if kind == "sqlite":
        return str(tmp_path / "lastra.db")
    if kind == "redis":
        from support.server import REDIS_URL

        return f"{REDIS_URL}#{{contract-{uuid.uuid4().hex[:8]}}}"
    return ""


def make(kind: str, place: str, history_limit: int) -> Store:
    if kind == "sqlite":
        return SqliteStore(Path(place), history_limit)
    if kind == "redis":
        url, _, prefix = place.partition("#")
        return RedisStore(url, history_limit, prefix=prefix)
    return MemoryStore(history_limit)


@asynccontextmanager
async def opened(kind: str, place: str, history_limit: int = 50) -> AsyncIterator[Store]:
    store = make(kind, place, history_limit)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def run(case: Awaitable[None]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(case, 20)

    asyncio.run(bounded())


def chat(text: str, user: str | None = None, client_id: str | None = None) -> Draft:
    data: dict[str, Any] = {"id": uuid.uuid4().hex, "kind": "user", "text": text}
    if user is not None:
        data["userId"] = user
    if client_id is not None:
        data["clientId"] = client_id
    return Draft("chat", data, user, client_id)


def texts(records: list[Record]) -> list[str]:
    return [orjson.loads(r.data).get("text", "") for r in records]


def test_fresh_store_has_an_epoch_and_nothing_in_it(kind: str, place: str) -> None:
    async def case() -> None:
        async with opened(kind, place) as store:
            assert store.epoch and isinstance(store.epoch, str)
            assert await store.last_seq() == 0
            assert await store.recent(10) == []
            assert await store.since(0) == []
            await store.ping()

    run(case())


def test_append_assigns_consecutive_seqs_and_stores_seq_in_the_data(kind: str, place: str) -> None:
    async def case() -> None:
        async with opened(kind, place) as store:
            first = await store.append([chat("a"), chat("b")])
            second = await store.append([chat("c")])
            seqs = [c.seq for c in first + second]
            assert seqs == [1, 2, 3]
            assert all(c.first_id is None and c.record is not None for c in first + second)
            records = await store.since(0)
            assert records is not None
            assert [r.seq for r in records] == [1, 2, 3]
            assert [orjson.loads(r.data)["seq"] for r in records] == [1, 2, 3]
            assert texts(records) == ["a", "b", "c"]
            assert await store.last_seq() == 3

    run(case())


def test_a_repeated_client_id_of_the_same_user_is_stored_once(kind: str, place: str) -> None:
    async def case() -> None:
        async with opened(kind, place) as store:
            original = chat("once", "u_1", "c-1")
            (stored,) = await store.append([original])
            again, other_user = await store.append(
                [chat("once, retried", "u_1", "c-1"), chat("same id, other user", "u_2", "c-1")]
            )
            assert again.first_id == original.id and again.seq == stored.seq
            assert again.record is None
            assert other_user.first_id is None and other_user.seq == stored.seq + 1
            records = await store.since(0)
            assert records is not None
            assert texts(records) == ["once", "same id, other user"]

    run(case())


def test_clear_deletes_every_earlier_event_and_seqs_go_on(kind: str, place: str) -> None:
    async def case() -> None:
        async with opened(kind, place) as store:
            await store.append([chat("old 1"), chat("old 2")])
            (cleared,) = await store.append([Draft("clear", {"id": "x", "by": "u_1"}, "u_1")])
            (after,) = await store.append([chat("new")])
            assert (cleared.seq, after.seq) == (3, 4)
            recent = await store.recent(10)
            assert [r.type for r in recent] == ["clear", "chat"]
            assert await store.since(0) is None, "events before the clear are gone: a gap"
            replay = await store.since(cleared.seq - 1)
            assert replay is not None and [r.seq for r in replay] == [3, 4]

    run(case())


def test_since_never_answers_with_a_gap(kind: str, place: str) -> None:
    async def case() -> None:
        async with opened(kind, place, history_limit=5) as store:
            for i in range(30):
                await store.append([chat(f"m{i}")])
            last = await store.last_seq()
            assert last == 30
            for after in range(0, 31):
                records = await store.since(after)
                if records is not None:  # everything after `after`, or None: never a part
                    assert [r.seq for r in records] == list(range(after + 1, last + 1)), after
            assert await store.since(25) is not None, "the window keeps the last 5"
            assert await store.since(last) == []
            assert await store.since(last + 5) is None, "a seq from the future is a gap"

    run(case())


def test_recent_is_the_newest_oldest_first(kind: str, place: str) -> None:
    async def case() -> None:
        async with opened(kind, place, history_limit=5) as store:
            await store.append([chat(f"m{i}") for i in range(12)])
            assert texts(await store.recent(3)) == ["m9", "m10", "m11"]
            assert [r.seq for r in await store.recent(5)] == [8, 9, 10, 11, 12]

    run(case())


def test_bot_states_are_kept(kind: str, place: str) -> None:
    async def case() -> None:
        async with opened(kind, place) as store:
            assert await store.bot_states() == {}
            await store.set_bot_state("sol", False)
            await store.set_bot_state("pip", True)
            await store.set_bot_state("sol", True)
            assert await store.bot_states() == {"sol": True, "pip": True}

    run(case())


def test_concurrent_appends_get_unique_consecutive_seqs(kind: str, place: str) -> None:
    async def case() -> None:
        async with opened(kind, place, history_limit=500) as store:
            batches = await asyncio.gather(
                *(store.append([chat(f"{w}-{i}") for i in range(5)]) for w in range(20))
            )
            seqs = sorted(c.seq for batch in batches for c in batch)
            assert seqs == list(range(1, 101))
            for batch in batches:  # a batch is stored in order, in one piece
                assert [c.seq for c in batch] == list(range(batch[0].seq, batch[0].seq + 5))

    run(case())


@pytest.mark.parametrize("kind", ["sqlite", "redis"], indirect=True)
def test_a_durable_store_survives_a_reopen(kind: str, place: str) -> None:
    async def case() -> None:
        async with opened(kind, place) as store:
            epoch = store.epoch
            await store.append([chat("kept", "u_1", "c-1"), chat("too")])
            await store.set_bot_state("noor", False)
        async with opened(kind, place) as store:
            assert store.epoch == epoch
            assert await store.last_seq() == 2
            assert texts(await store.recent(10)) == ["kept", "too"]
            assert await store.bot_states() == {"noor": False}
            (again,) = await store.append([chat("kept, retried", "u_1", "c-1")])
            assert again.first_id is not None and again.seq == 1
            (new,) = await store.append([chat("next")])
            assert new.seq == 3

    run(case())


def test_the_memory_store_starts_empty_each_time(place: str) -> None:
    async def case() -> None:
        async with opened("memory", place) as store:
            epoch = store.epoch
            await store.append([chat("gone")])
        async with opened("memory", place) as store:
            assert store.epoch != epoch and await store.last_seq() == 0

    run(case())


@pytest.mark.parametrize("kind", ["redis"], indirect=True)
def test_a_shared_store_tails_what_any_writer_appends(kind: str, place: str) -> None:
    async def case() -> None:
        async with opened(kind, place) as reader, opened(kind, place) as writer:
            assert reader.shared and writer.shared and reader.epoch == writer.epoch
            tail = cast(SharedStore, reader).tail(0)
            await writer.append([chat("one"), chat("two")])
            seen: list[Record] = []
            while len(seen) < 2:
                seen += await asyncio.wait_for(anext(tail), 5)
            assert [r.seq for r in seen] == [1, 2] and texts(seen) == ["one", "two"]
            await tail.aclose()

    run(case())
