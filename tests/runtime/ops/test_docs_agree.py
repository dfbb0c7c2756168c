"""docs/browser.md names the browser tools and actions the code has (issue 14: the docs
disagreed about `browser_evaluate` and "fill" vs `browser_type`)."""

from __future__ import annotations

import re
from pathlib import Path

from runtime.agents.browser_tools import browser_specs
from runtime.agents.spec import AgentSpec
from sandbox.guest.browser import ACTIONS

DOC = (Path(__file__).resolve().parents[3] / "docs" / "browser.md").read_text()


def test_the_tool_list_is_the_models_tools() -> None:
    start = DOC.index("The model gets these tools:")
    sentence = DOC[start : DOC.index(".\n", start)]
    named = re.findall(r"`(browser_\w+)`", sentence)
    assert named == [s.name for s in browser_specs(evaluate=True)]
    assert "browser: {evaluate: true}" in sentence
    # opt-in, as the doc says: not offered by default, offered when the spec says so
    assert "browser_evaluate" not in [s.name for s in browser_specs()]
    spec = AgentSpec.from_dict({"name": "a", "tools": ["browser"], "browser": {"evaluate": True}})
    assert spec.browser.evaluate is True


def test_the_name_table_matches_tools_and_actions() -> None:
    start = DOC.index("| agent tool | Python / HTTP action |")
    rows = DOC[start : DOC.index("\n\n", start)].splitlines()[2:]
    tools = {s.name for s in browser_specs(evaluate=True)}
    for row in rows:
        tool_cell, action_cell = row.split("|")[1:3]
        for tool in re.findall(r"`(browser_[a-z]+)", tool_cell):
            assert tool in tools, row
        actions = set(re.findall(r"`([a-z_]+)`", action_cell))
        assert actions and actions <= ACTIONS, row
    assert "fill" in ACTIONS and "type" not in ACTIONS and "browser_type" in tools
