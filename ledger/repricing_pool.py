"""A re-pricing plan made by several processes, each replaying ranges of the ledger.

One Python process replays ~100,000 usage events/s at best here (its own CPU: decoding
two rows per usage event and the Decimal cost), so `twoapi reprice` spreads the
positions over worker processes, each with its own connection, and adds their
partial plans up in position order (so each group's corrections keep the ledger's
order). A request whose `Received` falls in the range before its usage is looked up
by its id (`Owners.of`), so the plan is the one a single process makes.

Workers are spawned, not forked: the caller holds a connection pool with threads of
its own, which a fork would copy mid-flight.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

from ledger.repricing import Plan, replay_range

POSITIONS_PER_RANGE = 100_000  # at least; fewer ranges than WORKERS x RANGES_PER_WORKER are not cut finer
RANGES_PER_WORKER = 8  # several per worker, so one slow range does not leave the others idle
PERSISTENCE_KEYS = ("PERSISTENCE_MODULE", "POSTGRES_", "CREATE_TABLE")


def replay_in_processes(ledger: Any, result: Plan, corrected: dict[str, str], workers: int,
                        progress: Callable[[int], None] | None = None) -> None:
    """Replay every position up to the head at the call into `result`."""
    head = ledger.recorder.max_notification_id() or 0
    bounds = ranges(head, workers)
    # The table is there: workers that each ran the library's DDL at once would
    # trip over each other ("tuple concurrently updated").
    env = {k: v for k, v in ledger.env.items() if k.startswith(PERSISTENCE_KEYS)} | {"CREATE_TABLE": "n"}
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_start_worker,
                             initargs=(env, _blank(result), corrected)) as pool:
        for (_, stop), part in zip(bounds, pool.map(_replay, bounds), strict=True):
            result.merge(part)
            if progress is not None:
                progress(stop)


def ranges(head: int, workers: int) -> list[tuple[int, int]]:
    """(after, up to) position ranges that cover 1..head in order."""
    count = max(1, min(workers * RANGES_PER_WORKER, head // POSITIONS_PER_RANGE))
    size = -(-head // count) if head else 1
    return [(after, min(after + size, head)) for after in range(0, max(head, 1), size)]


def _blank(result: Plan) -> Plan:
    return Plan(result.run_id, result.book, result.prices, result.start, result.end, result.tenant)


# -- in each worker process ----------------------------------------------------------

_worker: dict[str, Any] = {}


def _start_worker(env: dict[str, str], blank: Plan, corrected: dict[str, str]) -> None:
    from ledger.application import Ledger

    _worker.update(ledger=Ledger(env=env), blank=blank, corrected=corrected)


def _replay(bounds: tuple[int, int]) -> Plan:
    part = _blank(_worker["blank"])
    replay_range(_worker["ledger"], part, _worker["corrected"], after=bounds[0], stop=bounds[1])
    return part
