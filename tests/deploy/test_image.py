"""The image: the Dockerfile passes hadolint, it builds from a lockfile that pins every dependency of
pyproject.toml (with hashes), and the build context holds every package the distribution ships."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\]+)", re.MULTILINE)


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


def test_the_lock_pins_every_dependency_and_build_requirement_of_pyproject() -> None:
    wanted = [*PYPROJECT["project"]["dependencies"], *PYPROJECT["build-system"]["requires"]]
    missing = unpinned(wanted, locked())
    assert not missing, f"requirements.lock is out of step with pyproject.toml (run scripts/lock.sh): {missing}"


def test_a_lock_that_misses_or_contradicts_a_dependency_is_caught() -> None:
    pins = locked()
    assert unpinned(["aiohttp>=3.10,<4"], {k: v for k, v in pins.items() if k != "aiohttp"})
    assert unpinned(["temporalio==1.35.0"], {**pins, "temporalio": "1.34.0"})
    assert not unpinned(["tomli>=1; python_version < '3.11'"], {})


@pytest.mark.parametrize("package", PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"])
def test_the_build_context_holds_every_shipped_package(package: str) -> None:
    kept = (ROOT / ".dockerignore").read_text().splitlines()
    assert f"!{package.rstrip('*')}/" in kept, f".dockerignore leaves {package} out of the image"
