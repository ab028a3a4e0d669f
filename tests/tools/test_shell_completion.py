"""`zen-flow completion bash|zsh|fish`: what a user gets pressing TAB, in the real shells.

Tools tier: bash is the machine's; zsh and fish come from Debian's packages unpacked by
tools/fetch-shells.sh (`make test` passes ZENFLOW_SHELLS_BIN; run alone, the cache is used or the zsh and
fish cases are skipped saying how to get it). Names from the cluster are tested in the integration tier.
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The shells run `zen-flow` itself to complete: the venv's bin first, nothing else of this machine's.
PATH = f"{Path(sys.executable).parent}:/usr/bin:/bin"
BASH_TAB = """
source <(zen-flow completion bash)
COMP_WORDS=($WORDS); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMP_LINE="$WORDS"; COMP_POINT=${#COMP_LINE}
_python_argcomplete zen-flow "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"
printf '%s\\n' "${COMPREPLY[@]}"
"""
FISH_TAB = 'zen-flow completion fish | source; complete -C "$WORDS"'
ZSH_SETUP = (
    b"module_path=(${(s.:.)ZENFLOW_ZSH_MODULE_PATH}); autoload -U compinit; compinit -u -D; "
    b"source <(zen-flow completion zsh); print READY\n"
)


def shells_bin() -> Path:
    configured = os.environ.get("ZENFLOW_SHELLS_BIN")
    if configured:
        return Path(configured)
    cached = sorted((Path.home() / ".cache" / "zen-flow" / "tools").glob("shells-*/bin"))
    if not cached:
        pytest.skip("zsh and fish are not fetched: run tools/fetch-shells.sh (make test does)")
    return cached[-1]


def bash_tab(words: str) -> list[str]:
    bash = shutil.which("bash")
    assert bash is not None, "bash is needed to build zen-flow"
    done = subprocess.run(
        [bash, "-c", BASH_TAB], env={"WORDS": words, "PATH": PATH},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout.split()


def fish_tab(words: str) -> list[str]:
    done = subprocess.run(
        [str(shells_bin() / "fish"), "--no-config", "-c", FISH_TAB],
        env={"WORDS": words, "PATH": PATH, "HOME": "/nonexistent"},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return [line.split("\t")[0] for line in done.stdout.splitlines()]


class Terminal:
    """An interactive zsh on a pseudo-terminal: keys in, the screen's bytes out."""

    def __init__(self, zsh: Path) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: becomes zsh
            os.execve(str(zsh), [str(zsh), "-f", "-i"], {"PATH": PATH, "PS1": "%% ", "TERM": "dumb"})
        self.screen = b""

    def type(self, keys: bytes, until: bytes, timeout: float = 30.0) -> bytes:
        start = len(self.screen)
        os.write(self.fd, keys)
        deadline = time.monotonic() + timeout
        while until not in self.screen[start:]:
            left = deadline - time.monotonic()
            assert left > 0, f"{until!r} not shown after {keys!r}: {self.screen[start:]!r}"
            if select.select([self.fd], [], [], left)[0]:
                self.screen += os.read(self.fd, 65536)
        return self.screen[start:]

    def close(self) -> None:
        os.close(self.fd)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)


def test_bash_completes_commands_options_and_choices() -> None:
    assert bash_tab("zen-flow su") == ["submit", "suspend"]
    assert "--generate-name" in bash_tab("zen-flow submit --gen")
    assert bash_tab("zen-flow list --phase F") == ["Failed"]
    assert bash_tab("zen-flow completion f") == ["fish"]
    assert bash_tab("zen-flow ui --p") == ["--port"]
    assert bash_tab("zen-flow cron trigger nightly --sch") == ["--scheduled-time"]


def test_fish_completes_commands_options_and_choices() -> None:
    assert fish_tab("zen-flow su") == ["submit", "suspend"]
    assert fish_tab("zen-flow submit --gen") == ["--generate-name"]
    assert fish_tab("zen-flow list --phase F") == ["Failed"]


def test_zsh_lists_commands_with_their_help_and_completes_options() -> None:
    terminal = Terminal(shells_bin() / "zsh")
    try:
        terminal.type(ZSH_SETUP, until=b"READY")
        shown = terminal.type(b"zen-flow su\t", until=b"suspend")
        assert b"submit   -- validate JobFlow files offline, then create them" in shown
        assert terminal.type(b"\x15zen-flow list --pha\t", until=b"--phase ").endswith(b"--phase ")
    finally:
        terminal.close()


def test_nothing_is_offered_when_no_cluster_answers(tmp_path: Path) -> None:
    # Flow names come from the cluster; with none reachable TAB offers nothing, fast, and prints no error.
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token: t}}]\n"
    )
    started = time.monotonic()
    offered = bash_tab(f"zen-flow get --kubeconfig {kubeconfig} ")
    assert "--namespace" in offered  # the options still are
    assert [word for word in offered if not word.startswith("-")] == []
    assert time.monotonic() - started < 30
