"""The project's own lock (constraints.txt -> runner/shipped/constraints.txt) agrees with
pyproject.toml: every declared requirement is pinned inside its range, and the lock holds
exactly the closure of `pip install -e ".[test,deepspeed,gguf]"` - no package that install
would not bring. The closure is walked through the installed packages' metadata, so
this runs offline; CI installs from the lock, so there the two are the same versions."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution

import pytest
from conftest import REPO
from packaging.requirements import Requirement

from runner.run.provenance import LOCK, canonical_name, read_lock

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; CI runs 3.11
LOCKED_EXTRAS = ("test", "deepspeed", "gguf")


def declared() -> list[Requirement]:
    """pyproject.toml's dependencies plus the extras the lock covers."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in LOCKED_EXTRAS:
        lines += project["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


def closure(roots: list[Requirement]) -> set[str]:
    """Every distribution pip installs for `roots` here (markers evaluated, extras
    followed), from the installed packages' own Requires-Dist."""
    wanted: dict[str, set[str]] = {}
    todo = [r for r in roots if r.marker is None or r.marker.evaluate({"extra": ""})]
    while todo:
        requirement = todo.pop()
        name = canonical_name(requirement.name)
        if name in wanted and set(requirement.extras) <= wanted[name]:
            continue
        wanted.setdefault(name, set()).update(requirement.extras)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            raise AssertionError(
                f"{name} is required but not installed; install with -c constraints.txt"
            ) from None
        for line in requires:
            dep = Requirement(line)
            extras = {"", *wanted[name]}
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in extras):
                todo.append(dep)
    return set(wanted)


def test_constraints_txt_at_the_top_is_the_lock_the_package_ships() -> None:
    assert (REPO / "constraints.txt").resolve() == LOCK.resolve()


def test_the_lock_says_at_its_top_how_to_regenerate_it() -> None:
    head = LOCK.read_text().splitlines()[:6]
    command = next(line for line in head if "tools/lock.sh" in line)
    assert "pip-compile" in command and "--extra=test" in command
    assert "--extra=deepspeed" in command and "pyproject.toml" in command
    assert (REPO / "tools" / "lock.sh").is_file()


def test_every_declared_requirement_is_pinned_inside_its_range() -> None:
    pins = read_lock()
    problems = []
    for requirement in declared():
        pinned = pins.get(canonical_name(requirement.name))
        if pinned is None:
            problems.append(f"{requirement} is not in the lock")
        elif not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"{requirement}: the lock pins {pinned}")
    assert not problems, "pyproject.toml and the lock disagree (run tools/lock.sh): " + "; ".join(
        problems
    )


def test_the_lock_holds_exactly_the_closure_of_the_declared_requirements() -> None:
    locked = set(read_lock())
    needed = closure(declared())
    assert not locked - needed, f"in the lock but never installed: {sorted(locked - needed)}"
    assert not needed - locked, f"installed but not in the lock: {sorted(needed - locked)}"


def test_the_lock_pins_the_cpu_torch_and_the_declared_test_tools() -> None:
    pins = read_lock()
    assert pins["torch"].startswith("2.13.0")
    assert {"hypothesis", "jinja2", "pytest", "ruff", "deepspeed"} <= set(pins)
    assert not {"awscli", "boto3", "moto", "flask", "cfn-lint", "ipython"} & set(pins)
