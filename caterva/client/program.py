"""Client work written once, with no I/O: a *program* is a generator that yields each step to
take and is sent its answer (or has its error thrown in), and returns its result.

    Call        a request (client/calls.py); its answer: the decoded value, or the Frames
    Parallel    programs to run at once, at most ``limit`` at a time; its answer: None

``Client._run`` and ``AsyncClient._run`` drive programs: they only send requests and feed
bytes. The async client resumes a program in a worker thread, so a program may do blocking
work (decode a selection, write a file) between its steps.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from caterva.client.calls import Call


@dataclass(frozen=True)
class Parallel:
    """Run ``programs`` at once, ``limit`` at a time; after the first failure, ``stop()`` so
    the others end at their next chunk, and that failure is the step's."""

    programs: list[Program]
    limit: int
    stop: Callable[[], None]


Step = Call | Parallel
Program = Generator[Step, Any, Any]


def advance(
    program: Program, answer: Any, error: BaseException | None = None
) -> tuple[Step | None, Any]:
    """Send ``answer`` (or throw ``error``) into ``program``: (its next step, None), or (None,
    its result) once it is done. StopIteration cannot cross a thread (asyncio futures refuse
    it), so this is what a worker thread returns."""
    try:
        step = program.send(answer) if error is None else program.throw(error)
    except StopIteration as done:
        return None, done.value
    return step, None
