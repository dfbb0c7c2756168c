"""sandbox.images: the input hash, mirror parsing, selection, and real builds (docker)."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import docker
import docker.errors
import pytest

from sandbox.errors import SpecError
from sandbox.images import (
    LABEL_INPUTS,
    ImageDef,
    NullReporter,
    build_images,
    catalog,
    image_status,
    inputs_hash,
    pinned_requirements,
    select,
)
from sandbox.images.build import _write_context
from sandbox.images.mirror import (
    DEFAULT_MIRROR,
    DEFAULT_SECURITY,
    choose_mirror,
    host_mirrors,
    parse_deb822_sources,
    parse_one_line_sources,
)
from sandbox.images.wheels import download_command

# --- the input hash -------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "img"
    d.mkdir()
    (d / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nCOPY hello.txt /hello.txt\n")
    (d / "hello.txt").write_text("hello\n")
    return d


def test_hash_is_stable_for_same_inputs(folder: Path) -> None:
    assert inputs_hash(folder, "sha256:aaa") == inputs_hash(folder, "sha256:aaa")


def test_hash_changes_with_content_parent_new_file_and_rename(folder: Path) -> None:
    h0 = inputs_hash(folder, "sha256:aaa")
    assert inputs_hash(folder, "sha256:bbb") != h0
    (folder / "hello.txt").write_text("hello!\n")
    h1 = inputs_hash(folder, "sha256:aaa")
    assert h1 != h0
    (folder / "sub").mkdir()
    (folder / "sub" / "x.sh").write_text("echo\n")
    h2 = inputs_hash(folder, "sha256:aaa")
    assert h2 != h1
    (folder / "sub" / "x.sh").rename(folder / "sub" / "y.sh")
    assert inputs_hash(folder, "sha256:aaa") != h2


def test_hash_ignores_downloaded_wheels_and_pycache(folder: Path) -> None:
    h0 = inputs_hash(folder, "p")
    for sub in ("wheels", "__pycache__"):
        (folder / sub).mkdir()
        (folder / sub / "junk.whl").write_bytes(b"x")
    assert inputs_hash(folder, "p") == h0


def test_hash_fields_cannot_run_together(tmp_path: Path) -> None:
    # Without length prefixes, file "ab" containing "c" and file "a" containing "bc" collide.
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "ab").write_text("c")
    (b / "a").write_text("bc")
    assert inputs_hash(a, "p") != inputs_hash(b, "p")


def test_pinned_requirements_accepts_pins_and_rejects_ranges(tmp_path: Path) -> None:
    assert pinned_requirements(tmp_path) == []
    (tmp_path / "requirements.txt").write_text("# c\nplaywright == 1.2.3  # why\n\ngreenlet==3\n")
    assert pinned_requirements(tmp_path) == ["playwright==1.2.3", "greenlet==3"]
    (tmp_path / "requirements.txt").write_text("numpy>=1.0\n")
    with pytest.raises(ValueError, match="not pinned"):
        pinned_requirements(tmp_path)


def test_shipped_images_pin_their_wheels() -> None:
    for image in catalog():
        assert (image.folder / "Dockerfile").is_file(), image.name
        pinned_requirements(image.folder)  # raises when a line is not pinned
    assert any(p.startswith("playwright==") for p in pinned_requirements(catalog()[1].folder))


def test_download_command_targets_bookworm_python(tmp_path: Path) -> None:
    cmd = download_command(tmp_path / "requirements.txt", tmp_path)
    assert cmd[cmd.index("--python-version") + 1] == "3.11.2"
    assert cmd[cmd.index("--abi") + 1] == "cp311"
    assert "--no-deps" in cmd and "--only-binary=:all:" in cmd
    assert "manylinux2014_x86_64" in cmd


def test_context_tar_has_folder_files_and_wheels(folder: Path, tmp_path: Path) -> None:
    import tarfile

    (folder / "requirements.txt").write_text("demo==1.0\n")
    whl = tmp_path / "demo-1.0-py3-none-any.whl"
    whl.write_bytes(b"zip")
    with (tmp_path / "ctx.tar").open("w+b") as f:
        _write_context(f, folder, [whl])
        with tarfile.open(fileobj=f) as tar:
            names = set(tar.getnames())
            owners = {(m.uid, m.gid) for m in tar.getmembers()}
    assert names == {
        "Dockerfile",
        "hello.txt",
        "requirements.txt",
        "wheels",
        "wheels/demo-1.0-py3-none-any.whl",
    }
    assert owners == {(0, 0)}


# --- selection ------------------------------------------------------------------------------


def test_select_defaults_to_base_and_browser() -> None:
    assert [d.name for d in select([])] == ["base", "browser"]


def test_select_all_and_named_include_parents_in_order() -> None:
    assert [d.name for d in select([], all_images=True)] == ["base", "browser", "research"]
    assert [d.name for d in select(["research"])] == ["base", "browser", "research"]
    assert [d.name for d in select(["corral/base"])] == ["base"]


def test_select_unknown_name_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="unknown image 'nope'"):
        select(["nope"])


# --- mirrors --------------------------------------------------------------------------------

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb deb-src
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
Enabled: no
URIs: http://disabled.example/debian
Suites: bookworm
"""


def test_parse_deb822_skips_disabled_and_comments() -> None:
    assert parse_deb822_sources(DEB822) == [
        ("http://mirror.example/debian/", ["bookworm", "bookworm-updates"]),
        ("http://security.example/debian-security", ["bookworm-security"]),
    ]


def test_parse_one_line_with_options_and_comments() -> None:
    text = (
        "# deb http://commented.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main contrib\n"
        "deb http://sec.example/debian-security bookworm-security main\n"
    )
    assert parse_one_line_sources(text) == [
        ("http://one.example/debian", ["bookworm"]),
        ("http://sec.example/debian-security", ["bookworm-security"]),
    ]


def test_choose_mirror_prefers_http_bookworm_and_falls_back() -> None:
    assert choose_mirror(parse_deb822_sources(DEB822)) == (
        "http://mirror.example/debian",
        "http://security.example/debian-security",
    )
    assert choose_mirror([("cdrom:[Debian]/", ["bookworm"])]) == (DEFAULT_MIRROR, DEFAULT_SECURITY)
    assert choose_mirror([]) == (DEFAULT_MIRROR, DEFAULT_SECURITY)


def test_host_mirrors_reads_list_and_sources_files_only(tmp_path: Path) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "other.sources.disabled-by-admin").write_text(
        "Types: deb\nURIs: http://wrong.example/debian\nSuites: bookworm\n"
    )
    (d / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list").write_text("# nothing here\n")
    assert host_mirrors(tmp_path)[0] == "http://mirror.example/debian"
    assert host_mirrors(tmp_path / "missing") == (DEFAULT_MIRROR, DEFAULT_SECURITY)


# --- real builds ----------------------------------------------------------------------------


@pytest.mark.docker
def test_build_skips_current_image_and_rebuilds_on_change(folder: Path, tmp_path: Path) -> None:
    client = docker.from_env()
    image = ImageDef("t", f"corral-test/img-{uuid.uuid4().hex[:10]}", folder, parent=None)
    made: set[str] = set()
    try:
        first = build_images(client, [image], reporter=NullReporter(), wheel_cache=tmp_path)[0]
        made.add(first.image_id)
        assert first.action == "built"
        built = client.images.get(image.tag)
        assert built.labels[LABEL_INPUTS] == inputs_hash(folder, built.labels["corral.parent"])
        assert image_status(client, image, [image]).current

        second = build_images(client, [image], wheel_cache=tmp_path)[0]
        assert (second.action, second.image_id) == ("up to date", first.image_id)

        (folder / "hello.txt").write_text("changed\n")
        stale = image_status(client, image, [image])
        assert stale.present and not stale.current and "out of date" in stale.reason
        third = build_images(client, [image], wheel_cache=tmp_path)[0]
        made.add(third.image_id)
        assert third.action == "built" and third.image_id != first.image_id
        with pytest.raises(docker.errors.ImageNotFound):  # the replaced image is not left over
            client.images.get(first.image_id)
        out = client.containers.run(image.tag, ["cat", "/hello.txt"], remove=True)
        assert out == b"changed\n"
    finally:
        for ref in [image.tag, *made]:
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(ref, force=True)
        left = client.images.list(name=image.repository)
        client.close()
    assert left == []


@pytest.mark.docker
def test_status_of_missing_image(folder: Path) -> None:
    client = docker.from_env()
    try:
        image = ImageDef("t", f"corral-test/missing-{uuid.uuid4().hex[:10]}", folder, parent=None)
        st = image_status(client, image, [image])
        assert (st.present, st.current, st.reason) == (False, False, "missing")
    finally:
        client.close()


BROWSER_CHECK = """
import os
from playwright.sync_api import sync_playwright
with sync_playwright() as p:
    b = p.chromium.launch(executable_path=os.environ["CORRAL_CHROMIUM"], args=["--no-sandbox"])
    page = b.new_page()
    page.set_content("<title>corral</title><p id=x>hello from chromium</p>")
    print(page.title(), "|", page.inner_text("#x"), "|", b.version)
    b.close()
"""


@pytest.mark.docker
@pytest.mark.browser
def test_browser_image_runs_chromium_as_sandboxes_do(corral_home: Path) -> None:
    # uid 1000, read-only root, tmpfs /tmp, no /workspace mount: the strictest way it runs.
    client = docker.from_env()
    try:
        out = client.containers.run(
            "corral/browser:latest",
            ["python3", "-c", BROWSER_CHECK],
            user="1000:1000",
            read_only=True,
            tmpfs={"/tmp": ""},
            init=True,
            network_mode="none",
            labels={"corral.managed": "true", "corral.home": str(corral_home)},
            remove=True,
        )
    finally:
        client.close()
    assert out.decode().startswith("corral | hello from chromium | ")


def test_cli_build_unknown_image_is_one_usage_line() -> None:
    from typer.testing import CliRunner

    from runtime.cli.images import app

    result = CliRunner().invoke(app, ["build", "nope"])
    assert result.exit_code == 2
    assert "corral: error: unknown image 'nope'" in result.output
    assert "Traceback" not in result.output


@pytest.mark.docker
def test_cli_list_shows_every_known_image() -> None:
    from typer.testing import CliRunner

    from runtime.cli.images import app

    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    for tag in ("corral/base:latest", "corral/browser:latest", "corral/research:latest"):
        assert tag in result.output


def test_bootstrap_without_root_fails_with_one_actionable_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sandbox.errors import SandboxError
    from sandbox.images import root

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SandboxError) as info:
        root.bootstrap(docker.DockerClient.__new__(docker.DockerClient), NullReporter())
    message = str(info.value)
    assert "\n" not in message and "sudo apt-get install -y debootstrap" in message
    assert info.value.reason == "bootstrap_failed"


def test_cli_build_without_docker_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from runtime.cli.images import app

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    result = CliRunner().invoke(app, ["build"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("corral: error: Docker Engine not reachable")


@pytest.mark.docker
def test_failing_dockerfile_is_one_build_error(folder: Path, tmp_path: Path) -> None:
    from sandbox.errors import SandboxError

    (folder / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nRUN echo nope >&2; exit 3\n")
    client = docker.from_env()
    image = ImageDef("t", f"corral-test/bad-{uuid.uuid4().hex[:10]}", folder, parent=None)
    try:
        with pytest.raises(SandboxError) as info:
            build_images(client, [image], wheel_cache=tmp_path)
        assert info.value.reason == "image_build_failed"
        assert f"building {image.tag} failed" in str(info.value)
        assert client.images.list(name=image.repository) == []
    finally:
        client.close()
