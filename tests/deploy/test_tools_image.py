"""The tools image docs/DEPLOY.md builds is the one the repository ships (issue 17: "ship
what the docs build from"), and what it copies and runs exists. Docker is not on the test
machines, so the Dockerfile is checked as text."""

from __future__ import annotations

import importlib
import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "tools.Dockerfile"


def _instructions(text: str) -> list[tuple[str, str]]:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [(line.split(None, 1)[0], line.split(None, 1)[1]) for line in lines]


def test_deploy_md_shows_the_shipped_dockerfile_and_builds_it() -> None:
    deploy = (ROOT / "docs" / "DEPLOY.md").read_text()
    block = re.search(r"```dockerfile\n(.*?)```", deploy, re.S)
    assert block is not None
    assert block.group(1) == DOCKERFILE.read_text()
    builds = re.findall(r"docker build .*", deploy)
    assert builds
    assert all("-f deploy/tools.Dockerfile" in line for line in builds)


def test_what_the_image_copies_exists_and_covers_every_package() -> None:
    copied = set()
    for verb, rest in _instructions(DOCKERFILE.read_text()):
        if verb == "COPY":
            *sources, _ = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                copied.add(source)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in packages} <= copied
    assert {"pyproject.toml", "README.md"} <= copied


def test_the_image_command_is_a_real_handler() -> None:
    (command,) = [rest for verb, rest in _instructions(DOCKERFILE.read_text()) if verb == "CMD"]
    (handler,) = json.loads(command)
    module, _, name = handler.rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))


def test_the_build_context_leaves_out_the_virtualenv_and_git() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git"} <= set(ignored)
