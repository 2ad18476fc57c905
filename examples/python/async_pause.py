"""A pause inside an asyncio task: the session is keyed by that task (its name shows in
the console). pdb is synchronous, so the whole event loop waits while you debug.

    actor-tui python3 examples/python/async_pause.py
"""

import asyncio


async def ticker():
    n = 0
    while True:
        n += 1
        await asyncio.sleep(0.01)


async def pauser():
    progress = 50
    await asyncio.sleep(0.05)
    breakpoint()
    return progress + 1


async def main():
    tick = asyncio.create_task(ticker(), name="ticker")
    result = await asyncio.create_task(pauser(), name="pauser")
    tick.cancel()
    print("pauser returned %d" % result, flush=True)


asyncio.run(main())
