"""`corral doctor`: rows from run_checks, and the CLI's exit code and failure lines."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from runtime.cli.doctor import Check, doctor, run_checks


def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:  # a group, so the command keeps its name as in `corral doctor`
        pass

    app.command("doctor")(doctor)
    return app


def by_name(rows: list[Check], name: str) -> Check:
    return next(r for r in rows if r.name == name)


def test_unreachable_docker_is_a_failing_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real client pointed at a socket nobody listens on: what a stopped dockerd looks like.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    rows = run_checks(home=tmp_path / "home")
    row = by_name(rows, "docker")
    assert row.failed and "not reachable" in row.detail and "dockerd" in row.hint
    assert by_name(rows, "data directory").level == "ok"


def test_unreachable_docker_exits_non_zero_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    result = CliRunner().invoke(cli(), ["doctor"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert any(line.startswith("docker: ") for line in result.output.splitlines())


def test_unwritable_data_directory_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    row = by_name(run_checks(home=blocker / "home"), "data directory")
    assert row.failed and str(blocker / "home") in row.detail and "CORRAL_HOME" in row.hint


@pytest.mark.docker
def test_missing_image_fails_with_hint_and_exit_code() -> None:
    ref = f"corral-test/missing-{uuid.uuid4().hex[:10]}:latest"
    result = CliRunner().invoke(cli(), ["doctor", "--image", ref])
    assert result.exit_code == 1, result.output
    assert f"image {ref}: missing — run `corral images build`" in result.output
    assert "Traceback" not in result.output


@pytest.mark.docker
def test_missing_image_row_from_run_checks(corral_home: Path) -> None:
    rows = run_checks(home=corral_home, images=["corral-test/nope:none"])
    assert by_name(rows, "docker").level == "ok"
    assert by_name(rows, "runtime runc").level == "ok"
    row = by_name(rows, "image corral-test/nope:none")
    assert (row.level, row.detail, row.hint) == ("fail", "missing", "run `corral images build`")


@pytest.mark.docker
def test_passing_run_when_images_exist(corral_home: Path) -> None:
    result = CliRunner().invoke(cli(), ["doctor"])
    assert result.exit_code == 0, result.output
    rows = run_checks(home=corral_home)
    assert {r.name for r in rows} >= {
        "docker",
        "image corral/base",
        "image corral/browser",
        "runtime runc",
        "runtime runsc",
        "data directory",
        "free disk",
    }
    assert not any(r.failed for r in rows)
