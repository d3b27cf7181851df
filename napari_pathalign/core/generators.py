"""Long steps are generators of progress whose return value is the result (so a napari
``thread_worker`` can show progress and cancel between steps). Two helpers to compose them."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator


def mapped(gen: Generator, fn: Callable) -> Iterator:
    """Yield ``fn(item)`` for each item of ``gen``; return its return value (``x = yield from mapped(...)``).

    Closing the outer generator closes ``gen`` too, so Stop / Cancel reach the innermost step.
    """
    try:
        while True:
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            yield fn(item)
    finally:
        gen.close()


def run_to_end(gen: Generator, on_item: Callable | None = None):
    """Run ``gen`` to its end, calling ``on_item`` with each yielded item; its return value."""
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_item is not None:
            on_item(item)
