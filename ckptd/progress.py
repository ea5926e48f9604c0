"""A progress line for long CLI operations: a spinner and the elapsed time, on a terminal only."""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
from types import TracebackType
from typing import TextIO

FRAMES = "|/-\\"
REFRESH_S = 0.1
# "Back to column 0, erase to the end of the line": how a spinner frame is drawn and removed.
ERASE_LINE = "\r\033[K"

# The spinner's frames and log lines share one terminal line: whoever writes holds this lock,
# and `_unfinished` is the stream whose last line is a spinner frame (no newline yet), if any.
_LINE_LOCK = threading.Lock()
_unfinished: TextIO | None = None


class LogHandler(logging.StreamHandler[TextIO]):
    """A stream handler that erases a spinner frame before writing a log line over it.

    The spinner draws its next frame below the log line, so the two never share a line.
    """

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record``, first erasing a spinner frame shown on the same stream."""
        global _unfinished

        with _LINE_LOCK:
            if _unfinished is not None and _unfinished is self.stream:
                self.stream.write(ERASE_LINE)
                _unfinished = None

            super().emit(record)


class Spinner:
    """Context manager that shows ``label`` with a spinner and elapsed seconds on ``stream``.

    Nothing is written when ``stream`` is not a terminal (journald, pipes, tests reading the
    output), so machine-read output stays clean.
    """

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def __enter__(self) -> Spinner:
        self._started = time.monotonic()
        if self.enabled:
            self._thread = threading.Thread(target=self._spin, name="ckptd-spinner", daemon=True)
            self._thread.start()

        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
            outcome = "done" if kind is None else "failed"
            self._write(f"{self.label} {outcome} in {self.elapsed:.1f} s\n")

    @property
    def elapsed(self) -> float:
        """Return the seconds since the operation started."""
        return time.monotonic() - self._started

    def _spin(self) -> None:
        for frame in itertools.cycle(FRAMES):
            self._write(f"{frame} {self.label} {self.elapsed:.1f} s")
            if self._done.wait(REFRESH_S):
                return

    def _write(self, text: str) -> None:
        global _unfinished

        # Redrawn in place; a text without its newline is a frame a log line must erase first.
        with _LINE_LOCK:
            self.stream.write(f"{ERASE_LINE}{text}")
            self.stream.flush()
            _unfinished = None if text.endswith("\n") else self.stream
