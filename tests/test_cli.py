"""The `hw5kit` entry point dispatches to every tool's own command line."""

import subprocess
import sys

import pytest

from hw5kit.cli import COMMANDS, main


def test_no_argument_lists_every_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_unknown_command_is_an_error(capsys):
    assert main(["deploy-everything"]) == 2
    assert "unknown command 'deploy-everything'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_help(name):
    done = subprocess.run(
        [sys.executable, "-m", "hw5kit.cli", name, "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout.lower()
