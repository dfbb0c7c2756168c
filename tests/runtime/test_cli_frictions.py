"""Operator frictions of the CLI (issue 14), each through the real `corral` command in a
subprocess: stdout and stderr apart, neither a terminal (as in CI or a pipe)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runtime.providers.base import Message
from tests.runtime.test_runs_e2e import write_agent

HANG_GUARD = 600.0
"""Seconds before a stuck command is killed: a guard against hangs, not a measure."""


def corral(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real `corral` command with `CORRAL_HOME=home` and `env` added to ours."""
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "CORRAL_HOME": str(home), **env},
        timeout=HANG_GUARD,
        check=False,
    )


def allowlist_sandbox(home: Path, domain: str, **env: str) -> str:
    """`corral sandbox create` of a 256m sandbox whose network is an allowlist of `domain`."""
    made = corral(
        home,
        "sandbox", "create", "--memory", "256m", "--network", "allowlist", "--allow", domain,
        **env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def events(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def run_id_of(output: str) -> str:
    created = next(e for e in events(output) if e["event_type"] == "interaction.created")
    return str(created["interaction"]["id"])


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# -- errors: one line on stderr, in every mode; no wrapping off a terminal ---------------------


@pytest.mark.docker
def test_run_errors_are_one_unwrapped_line_on_stderr(tmp_path: Path, corral_home: Path) -> None:
    # A model that cannot start: the run fails at once with an error longer than 80 columns.
    missing = tmp_path / ("a-scripted-model-file-that-is-not-there-" + "x" * 60 + ".yaml")
    agent = write_agent(tmp_path, None, model=f"scripted:{missing}")
    plain = corral(corral_home, "run", "--agent", str(agent), "-o", str(tmp_path / "o"), "go")
    assert plain.returncode == 1, plain.stderr
    assert "✗" not in plain.stdout and "no such script file" not in plain.stdout
    errors = [line for line in lines(plain.stderr) if "no such script file" in line]
    assert len(errors) == 1 and errors[0].startswith("corral: ")
    assert errors[0].endswith(f"{missing}"), "one line, never wrapped"
    # The header line names the (long) model on one line too.
    assert any(str(missing) in line and "image" in line for line in lines(plain.stderr))
    assert all(line.startswith(("corral: ", "run ")) for line in lines(plain.stderr))

    as_json = corral(
        corral_home, "run", "--agent", str(agent), "-o", str(tmp_path / "p"), "--json", "go"
    )
    assert as_json.returncode == 1
    assert [json.loads(line) for line in lines(as_json.stdout)]  # stdout: JSON lines only
    errors = [line for line in lines(as_json.stderr) if "no such script file" in line]
    assert len(errors) == 1 and errors[0].startswith("corral: ")

    rid = run_id_of(as_json.stdout)
    logs = corral(corral_home, "runs", "logs", rid, "--json")
    assert [json.loads(line) for line in lines(logs.stdout)]
    assert [line for line in lines(logs.stderr) if "no such script file" in line] == [
        f"corral: error: invalid_config: scripted: no such script file: {missing}"
    ]
    logs = corral(corral_home, "runs", "logs", rid)
    assert "no such script file" not in logs.stdout
    assert len([line for line in lines(logs.stderr) if "no such script file" in line]) == 1


def test_command_errors_are_one_line_on_stderr(corral_home: Path) -> None:
    res = corral(corral_home, "runs", "show", "int_" + "n" * 90)
    assert res.returncode == 1
    assert res.stdout == ""
    assert lines(res.stderr) == [
        f"corral: error: run 'int_{'n' * 90}' not found (no run id starts with it)"
    ]


# -- --continue: the run's agent, model and limits; parallel calls replayed as one message ------


TWO_CALLS_THEN_MORE: list[dict[str, Any]] = [
    {
        "tool_calls": [
            {"name": "exec", "arguments": {"command": "echo first-call"}},
            {"name": "exec", "arguments": {"command": "echo second-call"}},
        ]
    },
    {"text": "both done"},
    {"tool_calls": [{"name": "exec", "arguments": {"command": "echo follow-up-one"}}]},
    {"tool_calls": [{"name": "exec", "arguments": {"command": "echo follow-up-two"}}]},
    {"text": "all done"},
]


@pytest.mark.docker
def test_continue_reuses_agent_model_and_limits(tmp_path: Path, corral_home: Path) -> None:
    agent = write_agent(tmp_path, TWO_CALLS_THEN_MORE)
    model = f"scripted:{tmp_path / 'turns.yaml'}"
    first = corral(
        corral_home,
        "run", "--agent", str(agent), "--max-steps", "2", "-o", str(tmp_path / "o1"), "--json",
        "two at once",
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    rid = run_id_of(first.stdout)

    # No --agent, --model or --max-steps: the run's own (no model key is set, so the old
    # behaviour ran the scripted demo agent). Its history holds the two parallel calls as one
    # model turn, so the scripted model carries on at its third turn; the inherited
    # --max-steps 2 ends the follow-up after two more turns.
    again = corral(
        corral_home, "run", "--continue", rid[:10], "-o", str(tmp_path / "o2"), "--json", "more"
    )
    assert again.returncode == 3, again.stderr
    evs = events(again.stdout)
    created = evs[0]["interaction"]
    assert (created["agent"], created["model"]) == ("t", model)
    assert created["previous_interaction_id"] == rid
    calls = [
        e["step"]["arguments"]
        for e in evs
        if e["event_type"] == "step.start" and e["step"]["type"] == "function_call"
    ]
    assert [c["command"] for c in calls] == ["echo follow-up-one", "echo follow-up-two"]
    final = evs[-1]["interaction"]
    assert final["status"] == "budget_exceeded"
    assert "max_steps" in final["errors"][0]["message"]

    # What is given on the command line wins.
    third = corral(
        corral_home,
        "run", "--continue", rid, "--max-steps", "5", "-o", str(tmp_path / "o3"), "--json", "go",
    )  # fmt: skip
    assert third.returncode == 0, third.stderr


@pytest.mark.docker
async def test_history_replays_parallel_calls_as_one_assistant_message(
    tmp_path: Path, corral_home: Path
) -> None:
    """What the model is given on a follow-up: the turn with two tool calls is one assistant
    message with both calls, then both results."""
    from runtime.agents.registry import resolve_agent
    from runtime.controller import open_controller
    from runtime.providers.scripted import ScriptedProvider, load_script
    from runtime.settings import Settings

    agent = resolve_agent(str(write_agent(tmp_path, TWO_CALLS_THEN_MORE[:2])))
    seen: list[list[Message]] = []

    class Recording(ScriptedProvider):
        async def complete(self, messages: Any, **kw: Any) -> Any:
            seen.append(list(messages))
            return await super().complete(messages, **kw)

    def factory(model: str, **_: Any) -> Recording:
        return Recording(load_script(Path(model.split(":", 1)[1])))

    async with open_controller(Settings(home=corral_home)) as ctl:
        ctl.runner.provider_factory = factory
        first = await ctl.runner.run(await ctl.runner.create(agent, "two at once"))
        assert first.status == "completed"
        seen.clear()
        follow = await ctl.runner.create(agent, "again", previous_interaction_id=first.id)
        await ctl.runner.run(follow)
    given = seen[0]
    assert [m.role for m in given] == ["user", "assistant", "tool", "tool", "assistant", "user"]
    calls = given[1].tool_calls
    assert [c.arguments["command"] for c in calls] == ["echo first-call", "echo second-call"]
    assert [m.tool_call_id for m in given[2:4]] == [c.id for c in calls]
    assert "first-call" in given[2].content and "second-call" in given[3].content


# -- ids: whole in lists, unique prefixes accepted, exit codes ---------------------------------


@pytest.mark.docker
def test_ids_whole_prefixes_and_exit_codes(tmp_path: Path, corral_home: Path) -> None:
    agent = write_agent(tmp_path, [{"text": "ok " * 40}])
    runs = []
    for n in range(2):
        res = corral(
            corral_home,
            "run",
            "--agent",
            str(agent),
            "-o",
            str(tmp_path / f"o{n}"),
            "--json",
            "task " * 30,
        )
        assert res.returncode == 0, res.stderr
        runs.append(run_id_of(res.stdout))
    listed = corral(corral_home, "runs", "list")
    assert listed.returncode == 0
    for rid in runs:
        assert rid in listed.stdout  # whole, even with a long model path beside it

    rid = runs[0]
    prefix = next(rid[:n] for n in range(5, len(rid)) if not runs[1].startswith(rid[:n]))
    shown = corral(corral_home, "runs", "show", prefix)
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == rid
    arts = corral(corral_home, "runs", "artifacts", prefix)
    assert arts.returncode == 0, arts.stderr
    ambiguous = corral(corral_home, "runs", "show", "int_")
    assert ambiguous.returncode == 1 and ambiguous.stdout == ""
    assert len(lines(ambiguous.stderr)) == 1 and "ambiguous" in ambiguous.stderr
    missing = corral(corral_home, "runs", "logs", "int_missing")
    assert missing.returncode == 1 and len(lines(missing.stderr)) == 1
    assert "not found" in missing.stderr

    follow = corral(corral_home, "runs", "logs", prefix, "--follow")
    assert follow.returncode == 0 and f"completed run {rid}" in follow.stdout
    deleted = corral(corral_home, "runs", "delete", prefix)
    assert deleted.returncode == 0 and f"deleted {rid}" in deleted.stdout
    assert corral(corral_home, "runs", "show", rid).returncode == 1


@pytest.mark.docker
@pytest.mark.parametrize(
    ("limit", "code", "status"),
    [(["--max-steps", "1"], 3, "budget_exceeded"), ([], 0, "completed")],
)
def test_logs_follow_ends_with_the_status_and_exit_code_of_run(
    tmp_path: Path, corral_home: Path, limit: list[str], code: int, status: str
) -> None:
    agent = write_agent(
        tmp_path,
        [{"tool_calls": [{"name": "exec", "arguments": {"command": "true"}}]}, {"text": "ok"}],
    )
    res = corral(
        corral_home, "run", "--agent", str(agent), *limit, "-o", str(tmp_path / "o"), "--json", "x"
    )
    assert res.returncode == code, res.stderr
    rid = run_id_of(res.stdout)
    follow = corral(corral_home, "runs", "logs", rid, "--follow")
    assert follow.returncode == code
    assert lines(follow.stdout)[-1].startswith(f"● {status} run {rid}")
    as_json = corral(corral_home, "runs", "logs", rid[:12], "--follow", "--json")
    assert as_json.returncode == code
    assert events(as_json.stdout)[-1]["interaction"]["status"] == status


@pytest.mark.docker
def test_sandbox_commands_take_id_prefixes(corral_home: Path) -> None:
    made = [corral(corral_home, "sandbox", "create", "--memory", "256m") for _ in range(2)]
    assert all(m.returncode == 0 for m in made), [m.stderr for m in made]
    first, second = (m.stdout.strip() for m in made)
    prefix = next(first[:n] for n in range(4, len(first)) if not second.startswith(first[:n]))
    ran = corral(corral_home, "sandbox", "exec", prefix, "--", "echo", "hi")
    assert ran.returncode == 0 and ran.stdout == "hi\n"
    assert corral(corral_home, "sandbox", "ls", prefix).returncode == 0
    ambiguous = corral(corral_home, "sandbox", "exec", "sb-", "--", "true")
    assert ambiguous.returncode == 1 and "ambiguous" in ambiguous.stderr
    assert len(lines(ambiguous.stderr)) == 1
    missing = corral(corral_home, "sandbox", "exec", "sb-zzzz", "--", "true")
    assert missing.returncode == 1 and "not found" in missing.stderr
    removed = corral(corral_home, "sandbox", "rm", prefix, second)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.split() == ["removed", first, "removed", second]


# -- serve: where, for whom, and where its state lives ------------------------------------------


@pytest.mark.docker
@pytest.mark.parametrize(
    ("keys", "tenancy"),
    [
        (None, "single-user (no API keys; loopback only)"),
        ("k1:a,k2:a,k3:b", "3 keys for 2 tenants"),
    ],
)
def test_serve_prints_address_tenancy_and_data_directory(
    corral_home: Path, keys: str | None, tenancy: str
) -> None:
    import httpx

    # Readable lines: with JSON logs (CORRAL_LOG_FORMAT=json, or auto off a terminal) the
    # same facts are one `serve.listening` event (tests/compat/test_logs.py).
    env = {**os.environ, "CORRAL_HOME": str(corral_home), "CORRAL_LOG_FORMAT": "console"}
    if keys is not None:
        env["CORRAL_API_KEYS"] = keys
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "serve", "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stderr is not None
        got = b""
        # select() only so that a server that never says it stops the test instead of hanging
        while b"data directory" not in got and select.select([proc.stderr], [], [], HANG_GUARD)[0]:
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:
                break
            got += chunk
        said = got.decode().splitlines()[:3]
        assert len(said) == 3, said
        assert said[0].startswith("corral: listening on http://127.0.0.1:")
        assert said[1:] == [f"corral: tenancy: {tenancy}", f"corral: data directory: {corral_home}"]
        url = said[0].removeprefix("corral: listening on ")
        assert httpx.get(f"{url}/healthz", timeout=HANG_GUARD).status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=HANG_GUARD)


# -- sandbox gc says what it removed, the egress proxy included --------------------------------


@pytest.mark.docker
def test_gc_reports_the_egress_proxy_it_removes(corral_home: Path) -> None:
    sid = allowlist_sandbox(corral_home, "example.com")
    assert corral(corral_home, "sandbox", "rm", sid).returncode == 0
    gc = corral(corral_home, "sandbox", "gc")
    assert gc.returncode == 0, gc.stderr
    assert "removed the egress proxy corral-egress-" in gc.stdout
    again = corral(corral_home, "sandbox", "gc")
    assert "egress proxy" not in again.stdout


@pytest.mark.docker
def test_sandbox_list_says_why_a_run_sandbox_is_kept(tmp_path: Path, corral_home: Path) -> None:
    agent = write_agent(tmp_path, [{"text": "ok"}])
    res = corral(
        corral_home,
        "run",
        "--agent",
        str(agent),
        "--keep",
        "-o",
        str(tmp_path / "o"),
        "--json",
        "x",
    )
    assert res.returncode == 0, res.stderr
    rid = run_id_of(res.stdout)
    rows = json.loads(corral(corral_home, "sandbox", "list", "--json").stdout)
    assert [r["interaction"] for r in rows] == [rid]
    assert rows[0]["kept"] == f"kept for follow-ups of {rid}, until {rows[0]['until']}"
    plain = corral(corral_home, "sandbox", "list")
    assert f"kept for follow-ups of {rid}, until {rows[0]['until']}" in plain.stdout
    assert corral(corral_home, "runs", "delete", rid).returncode == 0
