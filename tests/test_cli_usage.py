"""Bad usage of a subcommand is explained with that subcommand's usage line, exit 2."""

from __future__ import annotations

import pytest

from ckptd.cli import main


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["check-config", "a.yaml", "b.yaml"], "usage: ckptd check-config [-h] FILE"),
        (["list", "one", "two"], "usage: ckptd list [-h] [--config FILE] [TARGET]"),
        (["status", "--json", "extra"], "usage: ckptd status"),
    ],
)
def test_a_stray_argument_shows_the_subcommands_usage(
    argv: list[str], usage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)

    stderr = capsys.readouterr().err
    assert 2 == caught.value.code
    assert stderr.startswith(usage), stderr
    assert f"ckptd {argv[0]}: error: unrecognized arguments: {argv[-1]}" in stderr


def test_a_missing_command_still_shows_the_top_level_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        main([])

    assert 2 == caught.value.code
    assert capsys.readouterr().err.startswith("usage: ckptd [-h] [--version] COMMAND")
