import asyncio

import pytest

from teola.runtime.streams import TextStream, complete_items, read_items


def lines(text):
    return [line.strip() for line in text.strip("`").split("\n") if line.strip()][:3]


def test_only_lines_ended_by_a_newline_are_final_until_the_text_ends():
    assert complete_items(lines, "```\nfirst\nsec", done=False) == ["first"]
    assert complete_items(lines, "```\nfirst\nsec", done=True) == ["first", "sec"]


def test_a_reader_gets_its_items_as_soon_as_they_are_final():
    async def main():
        stream = TextStream()
        reader = asyncio.ensure_future(read_items(lines, stream, (1, 2)))
        await stream.push("one\ntw")
        await asyncio.sleep(0)
        assert not reader.done()
        await stream.push("o\nthr")
        assert await asyncio.wait_for(reader, 1) == ["two"]
        whole = asyncio.ensure_future(read_items(lines, stream, None))
        await asyncio.sleep(0)
        assert not whole.done()  # the whole list waits for the end of the text
        await stream.finish()
        assert await whole == ["one", "two", "thr"]

    asyncio.run(main())


def test_a_reader_past_the_last_item_gets_an_empty_slice_and_a_failed_stream_raises():
    async def main():
        stream = TextStream()
        await stream.push("only\n")
        await stream.finish()
        assert await read_items(lines, stream, (2, 3)) == []
        broken = TextStream()
        await broken.finish(ValueError("engine died"))
        with pytest.raises(ValueError, match="engine died"):
            await read_items(lines, broken, (0, 1))

    asyncio.run(main())


def test_deltas_give_the_text_piece_by_piece_to_its_end_or_its_error():
    async def main():
        stream, broken = TextStream(), TextStream()
        pieces = asyncio.ensure_future(_collect(stream.deltas()))
        for delta in ("Par", "is is", " the capital."):
            await stream.push(delta)
            await asyncio.sleep(0)
        await stream.finish()
        assert "".join(await asyncio.wait_for(pieces, 1)) == "Paris is the capital."
        await broken.push("half")
        await broken.finish(ValueError("engine died"))
        with pytest.raises(ValueError, match="engine died"):
            await _collect(broken.deltas())

    asyncio.run(main())


async def _collect(deltas):
    return [delta async for delta in deltas]


def test_a_reader_behind_the_producer_still_gets_the_text_delta_by_delta():
    """What reports each token (an LLM's in-progress events) sees the deltas as they were pushed,
    however many came while it was busy; empty ones included, as the engine sent them."""

    async def main():
        stream = TextStream()
        for delta in ("one", " two", "", " three"):
            await stream.push(delta)
        await stream.finish()
        return [piece async for piece in stream.follow()]

    assert asyncio.run(main()) == ["one", " two", "", " three"]
