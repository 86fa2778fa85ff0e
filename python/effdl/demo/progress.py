"""Progress bars for the demo's long steps (rich), one bar per step."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class Bars:
    """A rich ``Progress`` shared by the whole run; ``step(label, total)`` yields an ``advance(note)``."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=console,
                                 transient=False)

    def __enter__(self) -> Bars:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    @contextlib.contextmanager
    def step(self, label: str, total: int) -> Iterator[Callable[[str], None]]:
        task = self.progress.add_task(label, total=total, note="")

        def advance(note: str = "") -> None:
            self.progress.update(task, advance=1, note=note)

        yield advance
        self.progress.update(task, completed=total)

    def epochs(self, label: str, total: int):
        """A step whose ``advance`` has the signature of ``effdl.training.train``'s ``progress``."""
        return _EpochBar(self, label, total)


class _EpochBar:
    def __init__(self, bars: Bars, label: str, total: int) -> None:
        self._cm = bars.step(label, total)

    def __enter__(self) -> Callable[[int, float], None]:
        advance = self._cm.__enter__()
        return lambda epoch, loss: advance(f"loss {loss:.3f}")

    def __exit__(self, *exc) -> None:
        self._cm.__exit__(*exc)
