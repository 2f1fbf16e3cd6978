"""The README Quickstart holds exactly two commands, and CI runs the second one verbatim."""

from __future__ import annotations

import re

from tests.helpers import ROOT


def _quickstart_blocks():
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Quickstart\n(.*?)(?=^## )", text, re.M | re.S).group(1)
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_two_commands_and_ci_runs_the_second():
    blocks = _quickstart_blocks()
    assert len(blocks) == 2 and all("\n" not in b for b in blocks)
    assert "mlsm demo" in blocks[0] and "pytest" in blocks[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert blocks[1] in ci
