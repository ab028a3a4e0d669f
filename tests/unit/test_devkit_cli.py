"""`zen-flow-dev`: the developer commands; bench and chaos keep their own options and help."""

from __future__ import annotations

import pytest

from zen_flow_dev.cli import main


@pytest.mark.parametrize(("command", "option"), [("bench", "--preset"), ("chaos", "--kill-every")])
def test_pass_through_commands_show_their_own_help(
    command: str, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: zen-flow-dev {command}")
    assert option in out


def test_the_runtime_cli_has_no_developer_commands(capsys: pytest.CaptureFixture[str]) -> None:
    from zen_flow.cli import main as runtime_main

    with pytest.raises(SystemExit):
        runtime_main(["dev"])
    assert "invalid choice: 'dev'" in capsys.readouterr().err
