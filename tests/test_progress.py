"""On a terminal, a log line written while the spinner shows erases the spinner's frame first."""

from __future__ import annotations

import io
import logging
import time

from ckptd.progress import ERASE_LINE, LogHandler, Spinner


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def wait_for(terminal: FakeTerminal, text: str, after: int = 0) -> None:
    deadline = time.monotonic() + 10
    while text not in terminal.getvalue()[after:]:
        assert time.monotonic() < deadline, terminal.getvalue()
        time.sleep(0.01)


def test_a_log_line_never_shares_a_line_with_a_spinner_frame() -> None:
    terminal = FakeTerminal()
    handler = LogHandler(terminal)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("ckptd.test_progress")
    logger.addHandler(handler)
    logger.propagate = False

    try:
        with Spinner("checkpoint of solver", terminal):
            wait_for(terminal, "| checkpoint of solver")
            logger.warning("store_copied_not_linked")
            # The next frame is drawn again after the log line.
            wait_for(terminal, "checkpoint of solver", terminal.getvalue().index("store_copied"))
    finally:
        logger.removeHandler(handler)

    lines = terminal.getvalue().split("\n")
    logged = next(line for line in lines if "store_copied_not_linked" in line)
    # What the terminal shows of that line: the text after its last carriage return.
    assert "store_copied_not_linked" == logged.rsplit("\r", 1)[-1].removeprefix("\033[K")
    assert logged.endswith(f"{ERASE_LINE}store_copied_not_linked")


def test_without_a_spinner_a_log_line_is_written_as_it_is() -> None:
    terminal = FakeTerminal()
    handler = LogHandler(terminal)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.emit(logging.makeLogRecord({"msg": "policy_reloaded"}))

    assert "policy_reloaded\n" == terminal.getvalue()
