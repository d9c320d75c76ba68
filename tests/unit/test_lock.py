"""The lock files pin, with hashes, every dependency pyproject.toml pins, at its version;
`make install` and the image install from them and nothing else (docs/security.md)."""

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def canonical(name: str) -> str:
    """PEP 503's normal form: case and runs of '-', '_', '.' do not tell names apart."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(requirements: list[str]) -> dict[str, str]:
    found = {}
    for line in requirements:
        match = PIN.match(line.strip())
        assert match, f"not pinned with ==: {line}"
        found[canonical(match.group(1))] = match.group(2)
    return found


def locked(path: Path) -> dict[str, tuple[str, int]]:
    """{package: (version, number of hashes)} of a `pip --require-hashes` file."""
    entries: dict[str, tuple[str, int]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        if match:
            current = canonical(match.group(1))
            assert current not in entries, f"{current} twice in {path.name}"
            entries[current] = (match.group(2), 0)
        hashes = re.findall(r"--hash=sha256:[0-9a-f]{64}", line)
        if hashes:
            version, count = entries[current]
            entries[current] = (version, count + len(hashes))
    return entries


@pytest.fixture(scope="module")
def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_run_time_lock_pins_every_dependency_and_the_build_backend(project):
    wanted = pins(project["project"]["dependencies"])
    wanted |= pins(project["build-system"]["requires"])
    lock = locked(ROOT / "requirements.lock")
    for name, version in wanted.items():
        assert name in lock, f"{name} is not in requirements.lock"
        assert lock[name][0] == version, f"{name}: pyproject {version}, lock {lock[name][0]}"
    assert all(count > 0 for _, count in lock.values()), "a lock entry without a hash"


def test_the_dev_lock_adds_the_dev_extras_at_the_same_versions(project):
    wanted = pins(project["project"]["dependencies"])
    wanted |= pins(project["project"]["optional-dependencies"]["dev"])
    wanted |= pins(project["build-system"]["requires"])
    run, dev = locked(ROOT / "requirements.lock"), locked(ROOT / "requirements-dev.lock")
    for name, version in wanted.items():
        assert dev.get(name, (None,))[0] == version, f"{name} {version} not in the dev lock"
    for name, (version, _) in run.items():  # the image runs what the tests ran
        assert dev[name][0] == version, (
            f"{name}: {version} in one lock, {dev[name][0]} in the other"
        )
    assert all(count > 0 for _, count in dev.values()), "a lock entry without a hash"


def test_make_install_uses_the_dev_lock_with_hashes():
    makefile = (ROOT / "Makefile").read_text()
    stamp = re.search(r"^\$\(STAMP\):(.*)\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert stamp, "no $(STAMP) rule"
    assert {"requirements.lock", "requirements-dev.lock"} <= set(stamp.group(1).split())
    recipe = [line.strip() for line in stamp.group(2).splitlines()]
    installs = [line for line in recipe if " install " in line]
    assert installs, recipe
    for line in installs:  # every pip install is either the locked one or takes no deps
        hashed = "--require-hashes" in line and "-r requirements-dev.lock" in line
        assert hashed or "--no-deps" in line, line


def test_the_image_installs_from_the_lock_and_runs_as_a_user_of_its_own():
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    instructions = [(line.split()[0].upper(), line) for line in lines]
    installs = [line for word, line in instructions if word == "RUN" and "pip install" in line]
    assert installs
    for line in installs:
        hashed = "--require-hashes" in line and "-r requirements.lock" in line
        assert hashed or "--no-deps" in line, line
    users = [i for i, (word, _) in enumerate(instructions) if word == "USER"]
    assert users, "the image runs as root"
    user = instructions[users[-1]][1].split()[1].split(":")[0]
    assert user not in ("root", "0"), user
    assert re.search(rf"useradd\b.*--uid 10001\b.*\b{user}\b", " ".join(lines)), user
    starts = [i for i, (word, _) in enumerate(instructions) if word in ("CMD", "ENTRYPOINT")]
    assert starts and users[-1] < min(starts), "USER comes after CMD/ENTRYPOINT"
