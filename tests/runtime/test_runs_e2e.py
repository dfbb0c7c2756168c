"""`corral run` end to end: real sandboxes, real tools, the scripted model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from typer.testing import CliRunner

from runtime.cli.main import app

pytestmark = pytest.mark.docker
runner = CliRunner()


def write_agent(tmp_path: Path, turns: list[dict[str, Any]] | None, **extra: Any) -> Path:
    """An agent spec on the scripted model replaying `turns` (None: its script is not written,
    for a spec whose run must fail or never start)."""
    script = tmp_path / "turns.yaml"
    if turns is not None:
        script.write_text(yaml.safe_dump({"turns": turns}))
    spec = {
        "name": "t",
        "model": f"scripted:{script}",
        "tools": ["exec", "python", "files"],
        "resources": {"memory": "256m"},
        **extra,
    }
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def exec_call(command: str, **kw: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": "exec", "arguments": {"command": command, **kw}}]}


def run(*args: str) -> Any:
    return runner.invoke(app, ["run", *args], catch_exceptions=False)


@dataclass(frozen=True)
class Container:
    id: str
    labels: dict[str, str]


def containers_of(home: Path) -> list[Container]:
    """One list call (no inspect per container, which races with a removal under way)."""
    client = docker.from_env()
    try:
        rows = client.api.containers(all=True, filters={"label": "corral.managed=true"})
    finally:
        client.close()
    return [
        Container(str(row["Id"]), dict(row.get("Labels") or {}))
        for row in rows
        if (row.get("Labels") or {}).get("corral.home") == str(home.resolve())
    ]


def events(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_multi_step_run_delivers_files(tmp_path: Path, corral_home: Path) -> None:
    agent = write_agent(
        tmp_path,
        [
            {
                "text": "Making files.",
                **exec_call("mkdir -p /workspace/out/sub && echo hello > /workspace/out/a.txt"),
            },
            {
                "tool_calls": [
                    {
                        "name": "write_file",
                        "arguments": {"path": "/workspace/out/sub/b.md", "content": "# B\n"},
                    }
                ]
            },
            {
                "tool_calls": [
                    {
                        "name": "python",
                        "arguments": {
                            "code": "open('/workspace/out/c.bin','wb').write(bytes(range(256)))"
                        },
                    }
                ]
            },
            {"text": "Done."},
        ],
    )
    out = tmp_path / "out"
    res = run("--agent", str(agent), "--out", str(out), "--json", "make files")
    assert res.exit_code == 0, res.output
    assert (out / "a.txt").read_text() == "hello\n"
    assert (out / "sub" / "b.md").read_text() == "# B\n"
    assert (out / "c.bin").read_bytes() == bytes(range(256))
    evs = events(res.output)
    assert all(isinstance(e["event_id"], str) for e in evs)
    ids = [int(e["event_id"]) for e in evs]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    kinds = {e["event_type"] for e in evs}
    assert {
        "interaction.created",
        "step.start",
        "step.stop",
        "artifact.created",
        "interaction.completed",
    } <= kinds
    arts = [e["artifact"]["path"] for e in evs if e["event_type"] == "artifact.created"]
    assert sorted(arts) == ["a.txt", "c.bin", "sub/b.md"]
    # announced during the run, not only at the end: the first artifact precedes the 2nd tool call
    first_art = next(i for i, e in enumerate(evs) if e["event_type"] == "artifact.created")
    write_call = next(
        i
        for i, e in enumerate(evs)
        if e["event_type"] == "step.start" and e["step"].get("name") == "write_file"
    )
    assert first_art < write_call
    assert containers_of(corral_home) == []  # no --keep: the sandbox is gone


@pytest.mark.parametrize(
    ("limit_args", "turns", "limit"),
    [
        (
            ["--max-steps", "2"],
            [exec_call("true"), exec_call("true"), exec_call("true"), {"text": "x"}],
            "max_steps",
        ),
        (
            ["--max-tool-calls", "1"],
            [exec_call("true"), exec_call("true"), {"text": "x"}],
            "max_tool_calls",
        ),
        (["--timeout", "3"], [exec_call("sleep 60"), {"text": "x"}], "timeout"),
        (
            [],
            [{"text": "a", "usage": {"input_tokens": 500, "output_tokens": 600}}],
            "max_total_tokens",
        ),
    ],
)
def test_limits_end_with_budget_exceeded(
    tmp_path: Path,
    corral_home: Path,
    limit_args: list[str],
    turns: list[dict[str, Any]],
    limit: str,
) -> None:
    extra = {"limits": {"max_total_tokens": 1000}} if limit == "max_total_tokens" else {}
    agent = write_agent(tmp_path, turns, **extra)
    res = run("--agent", str(agent), "--out", str(tmp_path / "o"), "--json", *limit_args, "go")
    assert res.exit_code == 3, res.output
    final = [e for e in events(res.output) if e["event_type"] == "interaction.completed"][-1]
    assert final["interaction"]["status"] == "budget_exceeded"
    assert limit in final["interaction"]["errors"][0]["message"]
    assert containers_of(corral_home) == []


def test_failing_tool_is_reported_to_the_model(tmp_path: Path) -> None:
    agent = write_agent(
        tmp_path,
        [
            exec_call("echo oops >&2; exit 4"),
            {"tool_calls": [{"name": "read_file", "arguments": {"path": "/etc/shadow"}}]},
            {"text": "Handled."},
        ],
    )
    res = run("--agent", str(agent), "--out", str(tmp_path / "o"), "--json", "fail")
    assert res.exit_code == 0, res.output
    results = [
        e["step"]
        for e in events(res.output)
        if e["event_type"] == "step.start" and e["step"]["type"] == "function_result"
    ]
    assert (
        results[0]["is_error"]
        and "exit code: 4" in results[0]["result"]
        and "oops" in results[0]["result"]
    )
    assert results[1]["is_error"]
    assert (
        "outside" in results[1]["result"].lower() or "not allowed" in results[1]["result"].lower()
    )


def test_model_failure_fails_the_run(tmp_path: Path) -> None:
    agent = write_agent(
        tmp_path, [{"text": "x"}], model="openai:gpt-4o-mini", base_url="http://127.0.0.1:9/v1"
    )
    res = run("--agent", str(agent), "--out", str(tmp_path / "o"), "--json", "x")
    assert res.exit_code == 1, res.output
    final = [e for e in events(res.output) if e["event_type"] == "interaction.completed"][-1]
    assert final["interaction"]["status"] == "failed"
    assert final["interaction"]["errors"][0]["message"]


def test_follow_up_sees_earlier_workspace(tmp_path: Path, corral_home: Path) -> None:
    # One script for the whole conversation: the follow-up carries on after the turns already
    # in its history.
    a1 = write_agent(
        tmp_path,
        [
            exec_call("echo remembered > /workspace/note.txt"),
            {"text": "saved"},
            exec_call("cat /workspace/note.txt"),
            {"text": "ok"},
        ],
    )
    res1 = run("--agent", str(a1), "--keep", "--out", str(tmp_path / "o1"), "--json", "remember")
    assert res1.exit_code == 0, res1.output
    run_id = events(res1.output)[0]["interaction"]["id"]
    assert len(containers_of(corral_home)) == 1
    res2 = run(
        "--agent", str(a1), "--continue", run_id, "--out", str(tmp_path / "o2"), "--json", "recall"
    )
    assert res2.exit_code == 0, res2.output
    results = [
        e["step"]
        for e in events(res2.output)
        if e["event_type"] == "step.start" and e["step"]["type"] == "function_result"
    ]
    assert "remembered" in results[0]["result"]
    show = runner.invoke(app, ["runs", "show", run_id])
    assert json.loads(show.output)["status"] == "completed"
    assert runner.invoke(app, ["runs", "delete", run_id]).exit_code == 0
    assert containers_of(corral_home) == []
    assert runner.invoke(app, ["runs", "show", run_id]).exit_code != 0


def test_ctrl_c_cancels_and_leaves_no_container(tmp_path: Path, corral_home: Path) -> None:
    agent = write_agent(tmp_path, [exec_call("echo started; sleep 120"), {"text": "never"}])
    env = {**os.environ, "CORRAL_HOME": str(corral_home)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtime.cli",
            "run",
            "--agent",
            str(agent),
            "--json",
            "--out",
            str(tmp_path / "o"),
            "wait",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        lines.append(line)
        if "started" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    final = [
        e for e in events("".join(lines) + rest) if e["event_type"] == "interaction.completed"
    ][-1]
    assert final["interaction"]["status"] == "cancelled"
    assert containers_of(corral_home) == []


def test_bad_agent_file_is_one_line_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nlimits: {max_steps: lots}\n")
    res = run("--agent", str(bad), "x")
    assert res.exit_code == 2
    assert "max_steps" in res.output and "Traceback" not in res.output


async def test_runs_start_from_the_warm_pool(tmp_path: Path, corral_home: Path) -> None:
    from runtime.agents.registry import resolve_agent
    from runtime.controller import open_controller
    from runtime.settings import Settings

    agent_file = write_agent(tmp_path, [exec_call("echo pooled"), {"text": "ok"}])
    spec = resolve_agent(str(agent_file))
    async with open_controller(Settings(home=corral_home), warm_pool=1) as ctl:
        assert ctl.pool is not None
        default_shape = resolve_agent(None).sandbox_spec()
        await ctl.pool.wait_ready(default_shape, 1)
        pooled = {h.id for h in await ctl.backend.list()}
        # the test agent asks for 256m: another shape, so it is a cold create
        cold = await ctl.runner.run(await ctl.runner.create(spec, "x"))
        assert cold.status == "completed" and cold.sandbox_id not in pooled
        same_shape = spec.model_copy(update={"resources": resolve_agent(None).resources})
        warm = await ctl.runner.run(await ctl.runner.create(same_shape, "x"))
        assert warm.status == "completed" and warm.sandbox_id in pooled
        await ctl.pool.wait_ready(default_shape, 1)  # refilled
    # the pool's spare sandboxes go with the controller; runs' sandboxes stay for follow-ups
    left = {c.labels["corral.sandbox"] for c in containers_of(corral_home)}
    assert left == {cold.sandbox_id, warm.sandbox_id}


def test_runs_list_logs_artifacts(tmp_path: Path) -> None:
    agent = write_agent(
        tmp_path,
        [
            {
                "tool_calls": [
                    {
                        "name": "write_file",
                        "arguments": {"path": "/workspace/out/r.txt", "content": "r"},
                    }
                ]
            },
            {"text": "done"},
        ],
    )
    res = run("--agent", str(agent), "--out", str(tmp_path / "o"), "--json", "x")
    assert res.exit_code == 0, res.output
    live = events(res.output)
    run_id = live[0]["interaction"]["id"]
    listed = json.loads(runner.invoke(app, ["runs", "list", "--json"]).output)
    assert [r["id"] for r in listed] == [run_id] and listed[0]["status"] == "completed"
    logs = runner.invoke(app, ["runs", "logs", run_id, "--json", "--follow"])
    assert logs.exit_code == 0
    assert [e["event_id"] for e in events(logs.output)] == [e["event_id"] for e in live]
    dl = tmp_path / "dl"
    arts = runner.invoke(app, ["runs", "artifacts", run_id, "--download", str(dl)])
    assert arts.exit_code == 0 and "r.txt" in arts.output
    assert (dl / "r.txt").read_text() == "r"
    missing = runner.invoke(app, ["runs", "logs", "int_missing"])
    assert missing.exit_code == 1 and "not found" in missing.output


def test_out_gets_every_file_despite_hostile_names(tmp_path: Path, corral_home: Path) -> None:
    """The hostile tester's run: before, the collector crashed or clobbered files and `--out`
    stopped after 1 of 5 with a FileNotFoundError."""
    long = "n" * 250
    agent = write_agent(
        tmp_path,
        [
            exec_call(
                f"mkdir -p /workspace/out && cd /workspace/out && printf part > .b.part "
                f"&& printf bee > b && printf long > {long} && printf x > x && printf a > a.txt"
            ),
            exec_call(
                "cd /workspace/out && rm x && mkdir x && printf y > x/y "
                "&& ln -s /etc/passwd link && printf bad > \"$(printf 'bad\\377')\""
            ),
            {"text": "Done."},
        ],
    )
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        ["run", "--agent", str(agent), "--out", str(out), "--json", "x"],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    assert (out / ".b.part").read_bytes() == b"part"
    assert (out / "b").read_bytes() == b"bee"
    assert (out / long).read_bytes() == b"long"
    assert (out / "x" / "y").read_bytes() == b"y"
    assert (out / "a.txt").read_bytes() == b"a"
    assert not (out / "link").exists() and not (out / "link").is_symlink()
    assert sorted(p.name for p in out.iterdir()) == sorted([".b.part", "a.txt", "b", long, "x"])
    skipped = {
        e["path"]: e["reason"] for e in events(res.stdout) if e["event_type"] == "artifact.skipped"
    }
    assert skipped == {"link": "symlink", "bad\\xff": "invalid_name"}
    err = [line for line in res.stderr.splitlines() if line.strip()]
    assert err == ["corral: artifact x not saved: the newer artifact x/y needs its name"]
    assert "Traceback" not in res.output
    shown = json.loads(runner.invoke(app, ["runs", "show", _run_id(res.stdout)]).stdout)
    assert {s["path"] for s in shown["skipped_artifacts"]} == {"link", "bad\\xff"}


def _run_id(output: str) -> str:
    return str(
        next(e for e in events(output) if e["event_type"] == "interaction.created")["interaction"][
            "id"
        ]
    )
