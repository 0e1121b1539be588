"""The container files and the systemd unit, checked without a Docker engine or systemd.

A small Dockerfile parser: instructions are real Dockerfile keywords, every FROM is pinned to a tag other
than `latest` (or a digest), nothing installs TensorFlow, the files COPY'd exist and the image runs the app.
hadolint runs too when it is on PATH (it is optional: the tests never depend on it).
"""
from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO

pytestmark = pytest.mark.runtime

DOCKER = REPO / "deploy" / "docker"
DOCKERFILES = sorted(p for p in DOCKER.glob("Dockerfile.*") if p.suffix != ".dockerignore")
KEYWORDS = {"FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
            "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}
UNIT = REPO / "deploy" / "systemd" / "edgexfer-app.service"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) pairs: comments dropped, backslash continuations joined."""
    out, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        pending += " " + line[:-1] if line.endswith("\\") else " " + line
        if not line.endswith("\\"):
            keyword, _, args = pending.strip().partition(" ")
            out.append((keyword, args.strip()))
            pending = ""
    assert not pending, f"{path.name}: a continuation line never ends"
    return out


def test_there_is_one_dockerfile_per_target():
    assert {p.name for p in DOCKERFILES} == {"Dockerfile.cpu", "Dockerfile.gpu", "Dockerfile.arm64"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.suffix[1:])
def test_dockerfile_parses_with_known_instructions(dockerfile):
    parsed = instructions(dockerfile)
    unknown = [k for k, _ in parsed if k.upper() not in KEYWORDS or k != k.upper()]
    assert not unknown, f"{dockerfile.name}: not Dockerfile instructions: {unknown}"
    assert parsed[0][0] == "FROM"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.suffix[1:])
def test_base_images_are_pinned(dockerfile):
    for keyword, args in instructions(dockerfile):
        if keyword == "FROM":
            image = [a for a in args.split() if not a.startswith("--")][0]
            assert "@sha256:" in image or re.fullmatch(r"[\w./-]+:[\w.-]+", image), f"unpinned: {image}"
            assert not image.endswith(":latest"), f"{dockerfile.name} uses :latest"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.suffix[1:])
def test_installs_edgexfer_runtime_extra_and_never_tensorflow(dockerfile):
    installs = [args for keyword, args in instructions(dockerfile) if keyword == "RUN" and "pip install" in args]
    assert installs, f"{dockerfile.name} installs nothing with pip"
    assert not any(re.search(r"tensorflow|keras|tf2onnx|\[train", args, re.I) for args in installs)
    extra = "gpu" if dockerfile.suffix == ".gpu" else "cpu"
    assert any(f'".[{extra}]"' in args for args in installs), f"expected edgexfer[{extra}] from the source"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.suffix[1:])
def test_image_runs_the_app_and_copies_existing_files(dockerfile):
    parsed = instructions(dockerfile)
    entry = [json.loads(args) for keyword, args in parsed if keyword == "ENTRYPOINT"]
    assert entry and entry[-1][-1] == "/app/edgexfer_app.py", "exec-form ENTRYPOINT must run the app"
    cmd = [json.loads(args) for keyword, args in parsed if keyword == "CMD"]  # exec form: signals reach python
    assert cmd and cmd[-1][0] == "/models/bundle" and "--watch" in cmd[-1]
    for keyword, args in parsed:
        if keyword == "COPY" and "--from" not in args:
            for source in shlex.split(args)[:-1]:
                assert (REPO / source).exists(), f"{dockerfile.name}: COPY {source} does not exist"


def test_dockerignore_copies_are_identical():
    main = (DOCKER / ".dockerignore").read_text()
    assert "!edgexfer/" in main
    for dockerfile in DOCKERFILES:
        assert (DOCKER / f"{dockerfile.name}.dockerignore").read_text() == main


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint is not installed (optional)")
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.suffix[1:])
def test_hadolint(dockerfile):
    # DL3008/DL3013: apt and pip packages are pinned through the base image tag and pyproject's extras.
    proc = subprocess.run(["hadolint", "--ignore", "DL3008", "--ignore", "DL3013", str(dockerfile)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_systemd_unit_has_the_required_keys():
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string(UNIT.read_text())
    service = unit["Service"]
    assert service["Restart"] == "on-failure" and service["KillSignal"] == "SIGTERM"
    assert service["User"] and service["User"] != "root" and service["WorkingDirectory"].startswith("/")
    exec_start = shlex.split(service["ExecStart"])
    assert exec_start[0].startswith("/") and exec_start[1].endswith("edgexfer_app.py") and "--watch" in exec_start
    assert unit["Install"]["WantedBy"] == "multi-user.target" and unit["Unit"]["Description"]
