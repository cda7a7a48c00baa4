"""Run one call on several threads at once, each with its own database connection."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def race(call: Callable[[], Any], *, threads: int = 2) -> tuple[list[Any], list[BaseException]]:
    """``call`` on ``threads`` threads released together; (results, errors) for the test to assert on."""
    from django.db import connection

    barrier = threading.Barrier(threads)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(call())
        except Exception as exc:  # surfaced to the test
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results, errors
