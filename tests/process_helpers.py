"""A real child process driven line by line (stdin commands, stdout replies): how tests
hold an account's lease, or its ledger file, in another process."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT


class LineProcess:
    """``python -c script *args``; ``say`` a command, ``expect`` its one-line reply."""

    def __init__(self, script: str, *args: str, ready: str = "held"):
        self.proc = subprocess.Popen([sys.executable, "-c", script, *args], cwd=REPO_ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.expect(ready)

    def expect(self, word: str) -> None:
        line = self.proc.stdout.readline().strip()
        assert line == word, f"child said {line!r}, expected {word!r} (exit {self.proc.poll()})"

    def say(self, word: str) -> None:
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
