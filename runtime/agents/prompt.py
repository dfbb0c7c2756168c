"""The system prompt of a run: the agent's instructions plus the facts of its sandbox."""

from __future__ import annotations

from runtime.agents.spec import AgentSpec

ENVIRONMENT = """\
You work inside an isolated Linux sandbox (Debian). Your working folder is /workspace.
Files you write under {output_dir} are delivered to the user as the run's artifacts.
Network access: {network}."""


def system_prompt(
    spec: AgentSpec, *, skills: list[str], data: list[str], extra: str | None = None
) -> str:
    """`extra`: the caller's `system_instruction`, after the agent's own."""
    network = {
        "none": "none (no internet)",
        "allowlist": "only these domains: " + ", ".join(spec.network.allow),
        "open": "open",
    }[spec.network.mode]
    parts = [spec.instructions.strip()] if spec.instructions.strip() else []
    parts.append(ENVIRONMENT.format(output_dir=spec.output_dir, network=network))
    if skills:
        parts.append(
            "Skills (folders with instructions and helpers; read a skill's README or SKILL.md "
            "before using it):\n" + "\n".join(f"- {s}" for s in skills)
        )
    if data:
        parts.append("Read-only data:\n" + "\n".join(f"- {d}" for d in data))
    if extra and extra.strip():
        parts.append(extra.strip())
    return "\n\n".join(parts)
