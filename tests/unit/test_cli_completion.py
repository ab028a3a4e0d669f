"""`zen-flow completion bash|zsh`: what a user gets pressing TAB, checked in a real bash."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

COMPLETE = """
source <("$PYTHON" -m zen_flow completion bash)
COMP_WORDS=($WORDS); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMP_LINE="$WORDS"; COMP_POINT=${#COMP_LINE}
_shtab_zen_flow zen-flow "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"
printf '%s\\n' "${COMPREPLY[@]}"
"""


def tab(words: str) -> list[str]:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash on this machine")
    done = subprocess.run(
        [bash, "-c", COMPLETE], env={"PYTHON": sys.executable, "WORDS": words, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout.split()


def test_tab_completes_commands_and_their_options() -> None:
    assert tab("zen-flow su") == ["submit", "suspend"]
    assert "--generate-name" in tab("zen-flow submit --gen")
    assert tab("zen-flow list --phase F") == ["Failed"]


def test_the_zsh_script_is_generated_too() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "zen_flow", "completion", "zsh"], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("#compdef zen-flow")
    assert "retry" in done.stdout
