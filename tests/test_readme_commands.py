"""The README's first steps, run as written, in order, on a fresh TRADENOVA_HOME: so the
README cannot drift from the CLI (change a command there and this runs the new one).

What it runs: every fenced code block that follows a line starting ``<!-- readme-test``,
in document order, one command a line (blank lines and ``#`` lines skipped). A command
must be runnable as written: a ``tradenova`` command with no placeholders (``[...]``,
``<...>``, ``a | b``, ``...``). A trailing comment may say what it prints: each
`backticked` fragment after the word ``prints`` must appear in its output, where
``<name>`` stands for one word (and ``<path>`` for a file that exists). For example::

    <!-- readme-test -->
    ```bash
    tradenova kill-switch status     # prints `kill switch for *: off`
    ```
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import REPO_ROOT

MARKER = "<!-- readme-test"
FIRST_STEPS = ["demo", "backtest", "report", "kill-switch"]  # what a new user runs first, in this order
PLACEHOLDER = re.compile(r"\[|\]|<[^>]*>|\s\|\s|\.\.\.")
COMMAND_TIMEOUT_S = 600


@dataclass
class ReadmeCommand:
    line: int
    argv: list[str]
    prints: list[str] = field(default_factory=list)


def readme_commands(text: str) -> list[ReadmeCommand]:
    """The commands of the README's ``readme-test`` blocks, in order; ValueError naming the
    line for one that cannot run as written."""
    lines, commands, i = text.splitlines(), [], 0
    while i < len(lines):
        if not lines[i].lstrip().startswith(MARKER):
            i += 1
            continue
        i += 1
        while i < len(lines) and not lines[i].strip():
            i += 1
        if i >= len(lines) or not lines[i].lstrip().startswith("```"):
            raise ValueError(f"README.md line {i}: {MARKER} --> must be followed by a fenced code block")
        i += 1
        while i < len(lines) and not lines[i].lstrip().startswith("```"):
            source = lines[i].strip()
            if source and not source.startswith("#"):
                commands.append(_command(i + 1, source))
            i += 1
    return commands


def _command(number: int, source: str) -> ReadmeCommand:
    text, comment = _split_comment(source)
    argv = shlex.split(text)
    if not argv or argv[0] != "tradenova":
        raise ValueError(f"README.md line {number}: only tradenova commands run here, got {source!r}")
    if PLACEHOLDER.search(text):
        raise ValueError(f"README.md line {number}: not runnable as written (a placeholder): {text.strip()!r}")
    prints = re.findall(r"`([^`]+)`", comment.split("prints", 1)[1]) if "prints" in comment else []
    return ReadmeCommand(number, argv, prints)


def _split_comment(source: str) -> tuple[str, str]:
    """(command, comment): the comment starts at a ``#`` that begins a word outside quotes."""
    quote = None
    for i, char in enumerate(source):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or source[i - 1].isspace()):
            return source[:i], source[i + 1:]
    return source, ""


def _fragment(expected: str) -> re.Pattern:
    """``expected`` as a pattern: ``<name>`` is one word, a space is any run of blanks (columns align)."""
    parts = re.split(r"(<[^>]+>|\s+)", expected)
    return re.compile("".join(r"(\S+)" if p.startswith("<") else r"\s+" if p.isspace() else re.escape(p)
                              for p in parts if p))


def _check_prints(command: ReadmeCommand, output: str) -> None:
    for expected in command.prints:
        match = _fragment(expected).search(output)
        assert match, f"README.md line {command.line}: {' '.join(command.argv)} did not print {expected!r}:\n{output}"
        names = re.findall(r"<([^>]+)>", expected)
        for name, value in zip(names, match.groups()):
            if name == "path":
                assert Path(value).is_file(), f"README.md line {command.line}: printed path {value} is not a file"


def test_the_parser_reads_commands_and_refuses_placeholders():
    text = ("intro\n<!-- readme-test -->\n```bash\n# a comment\ntradenova kill-switch status   # prints `off`\n\n"
            "tradenova report --account 'backtest:a b'\n```\n```bash\ntradenova ui\n```\n")
    commands = readme_commands(text)
    assert [c.argv for c in commands] == [["tradenova", "kill-switch", "status"],
                                          ["tradenova", "report", "--account", "backtest:a b"]]
    assert commands[0].prints == ["off"] and commands[1].prints == [] and commands[0].line == 5
    for bad in ("tradenova backtest [--model PATH]", "tradenova report --account backtest:<id>",
                "tradenova kill-switch on | off", "rm -rf /"):
        with pytest.raises(ValueError, match="README.md line 3"):
            readme_commands(f"<!-- readme-test -->\n```bash\n{bad}\n```\n")
    assert _fragment("report: <path>").search("  report:    /tmp/x.html").group(1) == "/tmp/x.html"


@pytest.mark.slow
def test_the_readme_first_steps_run_as_written_on_a_fresh_home(tradenova_home, tmp_path):
    readme = (REPO_ROOT / "README.md").read_text()
    commands = readme_commands(readme)
    assert commands, (f"README.md has no {MARKER} --> block: put one before a fenced block of the first "
                      f"commands, runnable as written (see {Path(__file__).name})")
    steps = iter(c.argv[1] for c in commands)
    assert all(step in steps for step in FIRST_STEPS), \
        f"the README's first steps must include {FIRST_STEPS} in this order, got {[c.argv[1] for c in commands]}"

    venv_bin = Path(sys.executable).parent  # as after `. .venv/bin/activate`
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}  # a new user's default: inside the home
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    for command in commands:
        done = subprocess.run([str(venv_bin / "tradenova"), *command.argv[1:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"README.md line {command.line}: {' '.join(command.argv)} " \
                                     f"exited {done.returncode}:\n{output}"
        _check_prints(command, done.stdout)
    assert (tradenova_home / "dagster").is_dir()
