"""AgentSpec validation, error text, sandbox conversion, and the agent registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.agents.registry import (
    BUILTIN_NAMES,
    EXAMPLES_DIR,
    list_agents,
    resolve_agent,
    resolve_agent_async,
)
from runtime.agents.spec import AgentSpec, FunctionTool, McpServerTool, load_agent_file
from runtime.errors import AgentSpecError, NotFound
from sandbox.spec import DataMount

SHIPPED = sorted(
    [
        *(Path(__file__).parents[2] / "runtime/agents/builtin").glob(
            f"{{{','.join(BUILTIN_NAMES)}}}.yaml"
        )
    ]
)


def write(tmp_path: Path, text: str, name: str = "agent.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def error_lines(path: Path) -> list[str]:
    with pytest.raises(AgentSpecError) as info:
        load_agent_file(path)
    return str(info.value).splitlines()


@pytest.mark.parametrize(
    "path",
    [Path(__file__).parents[2] / f"runtime/agents/builtin/{n}.yaml" for n in BUILTIN_NAMES]
    + sorted(EXAMPLES_DIR.glob("*.yaml")),
    ids=lambda p: p.stem,
)
def test_every_builtin_and_example_validates(path: Path) -> None:
    spec = load_agent_file(path)
    assert spec.name == path.stem
    assert spec.description
    assert spec.instructions
    spec.sandbox_spec()  # converts without error


def test_examples_are_shipped() -> None:
    assert {p.stem for p in EXAMPLES_DIR.glob("*.yaml")} >= {"researcher", "coder", "data-analyst"}


def test_demo_agent_is_scripted_and_says_so() -> None:
    demo = resolve_agent("demo")
    assert demo.model == "scripted:demo"
    assert demo.resolved_image() == "corral/base"
    assert "scripted demo" in demo.description.lower()


def test_defaults() -> None:
    spec = AgentSpec.from_dict({"name": "a"})
    assert spec.model is None
    assert spec.tools == ["exec", "python", "files"]
    assert spec.builtin_tools() == [
        "exec",
        "python",
        "read_file",
        "write_file",
        "edit_file",
        "list_files",
    ]
    assert (spec.limits.max_steps, spec.limits.max_tool_calls, spec.limits.timeout) == (
        30,
        100,
        1800,
    )
    assert spec.limits.max_total_tokens is None
    assert spec.output_dir == "/workspace/out"
    assert spec.network.mode == "none"
    assert spec.resolved_image() == "corral/base"
    assert spec.source == "<api>"


def test_wrong_type_names_field_and_value(tmp_path: Path) -> None:
    lines = error_lines(write(tmp_path, "name: a\nlimits:\n  max_steps: many\n"))
    assert len(lines) == 1
    assert lines[0].startswith(f"{tmp_path / 'agent.yaml'}: limits.max_steps: ")
    assert "integer" in lines[0] and "'many'" in lines[0]


def test_unknown_field_suggests_the_right_one(tmp_path: Path) -> None:
    (line,) = error_lines(write(tmp_path, "name: a\ninstruction: hi\n"))
    assert line.endswith(
        "agent.yaml: instruction: unknown field (did you mean 'instructions'?); "
        "allowed: name, description, model, base_url, instructions, tools, skills, "
        "data, image, resources, network, limits, output_dir, generation, browser"
    )
    (nested,) = error_lines(write(tmp_path, "name: a\nresources: {memroy: 2g}\n"))
    assert "resources.memroy: unknown field (did you mean 'memory'?)" in nested


def test_one_line_per_problem(tmp_path: Path) -> None:
    lines = error_lines(
        write(tmp_path, "name: Bad Name\ntools: [exec, shell]\nlimits: {timeout: -1}\n")
    )
    assert len(lines) == 3
    assert all(line.startswith(str(tmp_path / "agent.yaml") + ": ") for line in lines)
    assert any("name: 'Bad Name' is not a slug" in line for line in lines)
    assert any("tools[1]: " in line and "'shell'" in line for line in lines)
    assert any("limits.timeout: " in line for line in lines)


def test_bad_yaml_reports_line_number(tmp_path: Path) -> None:
    (line,) = error_lines(write(tmp_path, "name: a\ntools: [exec\ninstructions: x: y\n"))
    assert line.startswith(f"{tmp_path / 'agent.yaml'}: line ")
    assert "invalid YAML" in line
    (tab,) = error_lines(write(tmp_path, "name: a\ntools:\n  - exec\n\t- python\n"))
    assert ": line 4, column 1: invalid YAML" in tab


def test_not_a_mapping_empty_and_missing_files(tmp_path: Path) -> None:
    (line,) = error_lines(write(tmp_path, "- a\n- b\n"))
    assert "expected a mapping" in line and "got list" in line
    (line,) = error_lines(write(tmp_path, "# nothing\n"))
    assert "empty file" in line
    (line,) = error_lines(tmp_path / "nope.yaml")
    assert line == f"{tmp_path / 'nope.yaml'}: no such file"


def test_bad_network_mode(tmp_path: Path) -> None:
    (line,) = error_lines(write(tmp_path, "name: a\nnetwork: {mode: closed}\n"))
    assert (
        "network.mode: " in line and "'none', 'allowlist' or 'open'" in line and "'closed'" in line
    )


def test_network_allow_rules() -> None:
    with pytest.raises(AgentSpecError, match="allowlist needs at least one domain"):
        AgentSpec.from_dict({"name": "a", "network": "allowlist"})
    with pytest.raises(AgentSpecError, match="only used with mode: allowlist"):
        AgentSpec.from_dict({"name": "a", "network": {"mode": "open", "allow": ["a.com"]}})
    with pytest.raises(AgentSpecError, match="not a domain"):
        AgentSpec.from_dict({"name": "a", "network": {"mode": "allowlist", "allow": ["http://x"]}})
    spec = AgentSpec.from_dict(
        {"name": "a", "network": {"mode": "allowlist", "allow": ["*.Example.com", "pypi.org."]}}
    )
    assert spec.network.allow == ["*.example.com", "pypi.org"]


@pytest.mark.parametrize(
    "bad", ["/etc", "/workspace", "out", "/workspace/../etc", "/workspace/data/x"]
)
def test_output_dir_must_be_under_workspace(bad: str) -> None:
    with pytest.raises(AgentSpecError, match=r"^<api>: output_dir: "):
        AgentSpec.from_dict({"name": "a", "output_dir": bad})


def test_output_dir_is_normalised() -> None:
    assert (
        AgentSpec.from_dict({"name": "a", "output_dir": "/workspace/res/"}).output_dir
        == "/workspace/res"
    )


def test_tools_shapes() -> None:
    spec = AgentSpec.from_dict(
        {
            "name": "a",
            "tools": [
                "exec",
                {"type": "browser"},
                "read_file",
                {"type": "function", "name": "lookup", "parameters": {"type": "object"}},
                {
                    "type": "mcp_server",
                    "name": "docs",
                    "url": "https://mcp.example.com/mcp",
                    "headers": {"Authorization": "Bearer x"},
                    "allowed_tools": ["search"],
                },
            ],
        }
    )
    assert spec.builtin_tools() == ["exec", "browser", "read_file"]
    assert spec.function_tools() == [
        FunctionTool(name="lookup", description="", parameters={"type": "object"})
    ]
    (mcp,) = spec.mcp_servers()
    assert isinstance(mcp, McpServerTool) and mcp.allowed_tools == ["search"]
    assert spec.resolved_image() == "corral/browser"  # browser implies the browser image
    assert AgentSpec.from_dict({**spec.to_dict(), "image": "mine"}).resolved_image() == "mine"
    # to_dict round-trips
    assert AgentSpec.from_dict(spec.to_dict()) == spec


def test_bad_tool_objects() -> None:
    with pytest.raises(AgentSpecError, match=r"tools\[0\]: a tool is a name"):
        AgentSpec.from_dict({"name": "a", "tools": [{"type": "shell"}]})
    with pytest.raises(AgentSpecError, match=r"tools\[0\]\.url: "):
        AgentSpec.from_dict(
            {"name": "a", "tools": [{"type": "mcp_server", "name": "m", "url": "ftp://x"}]}
        )
    with pytest.raises(AgentSpecError, match="clashes with a built-in tool"):
        AgentSpec.from_dict({"name": "a", "tools": ["exec", {"type": "function", "name": "exec"}]})
    with pytest.raises(AgentSpecError, match="duplicate tool name 'f'"):
        AgentSpec.from_dict(
            {
                "name": "a",
                "tools": [{"type": "function", "name": "f"}, {"type": "function", "name": "f"}],
            }
        )


def test_model_string_shape() -> None:
    assert (
        AgentSpec.from_dict({"name": "a", "model": "openai:gpt-4o-mini"}).model
        == "openai:gpt-4o-mini"
    )
    with pytest.raises(AgentSpecError, match="model: 'gpt-4o' is not provider:model"):
        AgentSpec.from_dict({"name": "a", "model": "gpt-4o"})


def test_skills_and_data_resolve_against_the_spec_folder(tmp_path: Path) -> None:
    (tmp_path / "skills" / "pdf").mkdir(parents=True)
    (tmp_path / "sales.csv").write_text("a,b\n")
    (tmp_path / "exports").mkdir()
    spec = load_agent_file(
        write(
            tmp_path,
            "name: a\nskills: [skills/pdf]\n"
            "data:\n  - sales.csv\n  - {source: exports, target: q1}\n",
        )
    )
    assert [(s.name, s.source) for s in spec.skills] == [("pdf", tmp_path / "skills" / "pdf")]
    assert [(d.source, d.target) for d in spec.data] == [
        (tmp_path / "sales.csv", "/workspace/data/sales.csv"),
        (tmp_path / "exports", "/workspace/data/q1"),
    ]
    sb = spec.sandbox_spec()
    assert sb.data == (
        DataMount(source=tmp_path / "sales.csv", target="/workspace/data/sales.csv"),
        DataMount(source=tmp_path / "exports", target="/workspace/data/q1"),
    )
    # The stored form (absolute paths) loads back without a folder.
    assert AgentSpec.from_dict(spec.to_dict()).data == spec.data


def test_host_path_errors(tmp_path: Path) -> None:
    (line,) = error_lines(write(tmp_path, "name: a\nskills: [missing]\n"))
    assert f"skills: skill folder not found: {tmp_path / 'missing'}" in line
    (tmp_path / "f.txt").write_text("x")
    (line,) = error_lines(write(tmp_path, "name: a\nskills: [f.txt]\n"))
    assert "skill folder must be a folder" in line
    (line,) = error_lines(write(tmp_path, "name: a\ndata: [{source: f.txt, target: ../../etc}]\n"))
    assert "data: target '../../etc' must be a name or a path under /workspace/data" in line
    with pytest.raises(AgentSpecError, match="needs a spec file"):
        AgentSpec.from_dict({"name": "a", "data": ["f.txt"]})
    with pytest.raises(AgentSpecError, match="host paths are not allowed"):
        AgentSpec.from_dict(
            {"name": "a", "data": [str(tmp_path / "f.txt")]}, allow_host_paths=False
        )


def test_sandbox_spec_conversion() -> None:
    spec = AgentSpec.from_dict(
        {
            "name": "a",
            "resources": {"cpus": 2, "memory": "2g", "disk": "5g", "pids": 512},
            "network": {"mode": "allowlist", "allow": ["pypi.org"]},
        }
    )
    sb = spec.sandbox_spec()
    assert (sb.image, sb.cpus, sb.memory, sb.disk, sb.pids) == (
        "corral/base",
        2.0,
        2 * 1024**3,
        5 * 1024**3,
        512,
    )
    assert (sb.network, sb.allowlist) == ("allowlist", ("pypi.org",))
    default = AgentSpec.from_dict({"name": "a"}).sandbox_spec()
    assert default.network == "none" and default.memory == 1024**3  # sandbox defaults kept


def test_resources_validated() -> None:
    with pytest.raises(AgentSpecError, match=r"resources\.memory: not a size"):
        AgentSpec.from_dict({"name": "a", "resources": {"memory": "lots"}})
    with pytest.raises(AgentSpecError, match=r"resources\.memory: memory must be at least 32m"):
        AgentSpec.from_dict({"name": "a", "resources": {"memory": "1m"}})


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    assert load_agent_file(write(tmp_path, "description: x\n", "helper.yaml")).name == "helper"


# Registry -----------------------------------------------------------------------------------


def test_resolve_none_is_builtin_default() -> None:
    spec = resolve_agent(None)
    assert (spec.name, spec.source) == ("default", "builtin:default")


def test_resolve_file_and_names_in_order(tmp_path: Path, corral_home: Path) -> None:
    f = write(tmp_path, "name: mine\n", "mine.yaml")
    assert resolve_agent(str(f)).source == str(f)
    (corral_home / "agents").mkdir()
    write(corral_home / "agents", "name: helper\ndescription: from home\n", "helper.yaml")
    write(corral_home / "agents", "name: default\ndescription: shadowed\n", "default.yaml")
    assert resolve_agent("helper").description == "from home"
    assert resolve_agent("default").source == "builtin:default"  # built-ins come first
    extra = tmp_path / "extra"
    extra.mkdir()
    write(extra, "name: other\n", "other.yaml")
    assert resolve_agent("other", extra_dirs=[extra]).name == "other"
    names = [s.name for s in list_agents(extra_dirs=[extra])]
    assert names[:2] == ["default", "demo"] and names.count("default") == 1
    assert {"helper", "other", "researcher"} <= set(names)


def test_unknown_name_lists_available() -> None:
    with pytest.raises(NotFound, match=r"unknown agent 'nope' \(available: .*default, demo"):
        resolve_agent("nope")


def test_store_lookup_is_last(corral_home: Path) -> None:
    stored = {"name": "saved", "model": "openai:x"}
    spec = resolve_agent("saved", store_lookup=lambda n: stored if n == "saved" else None)
    assert (spec.model, spec.source) == ("openai:x", "store:saved")


async def test_resolve_async_with_store() -> None:
    async def lookup(name: str) -> dict[str, object] | None:
        return {"name": name} if name == "saved" else None

    assert (await resolve_agent_async("saved", store_lookup=lookup)).name == "saved"
    assert (await resolve_agent_async(None)).name == "default"
    with pytest.raises(NotFound):
        await resolve_agent_async("nope", store_lookup=lookup)


def test_broken_home_file_is_reported_not_fatal(corral_home: Path) -> None:
    (corral_home / "agents").mkdir()
    write(corral_home / "agents", "name: broken\nlimits: 3\n", "broken.yaml")
    write(corral_home / "agents", "name: other-name\n", "mismatch.yaml")
    errors: list[AgentSpecError] = []
    names = [s.name for s in list_agents(on_error=errors.append)]
    assert "broken" not in names and "default" in names
    assert len(errors) == 2
    assert any("differs from the file name" in str(e) for e in errors)
    with pytest.raises(AgentSpecError, match=r"broken\.yaml: limits: "):
        resolve_agent("broken")


def test_runtime_reaches_the_sandbox_spec_and_is_checked() -> None:
    from runtime.agents.spec import AgentSpec
    from runtime.errors import AgentSpecError

    spec = AgentSpec.from_dict({"name": "g", "resources": {"runtime": "runsc"}})
    assert spec.sandbox_spec().runtime == "runsc"
    assert AgentSpec.from_dict({"name": "r"}).sandbox_spec().runtime == "runc"
    with pytest.raises(AgentSpecError, match=r"resources\.runtime"):
        AgentSpec.from_dict({"name": "b", "resources": {"runtime": "kata"}})
