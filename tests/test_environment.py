"""environment.yml (conda) and pyproject.toml (pip) must ask for the same packages."""

import re
import sys
from pathlib import Path

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}  # pip name -> conda-forge name where they differ
PIP_ONLY = {"mplfonts", "playwright"}  # installed by the pip: section (playwright: its conda package is not conda-forge's)


def split_requirement(text: str) -> tuple[str, str]:
    text = text.split(";")[0].strip()
    name, spec = re.match(r"([A-Za-z0-9_.\-]+)\s*(.*)", text).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in ("lab", "test"):
        lines += project["optional-dependencies"][extra]
    return dict(split_requirement(line) for line in lines if "python_version" not in line)


def conda_requirements() -> tuple[dict[str, str], list[str]]:
    deps = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda = dict(split_requirement(d) for d in deps if isinstance(d, str) and not d.startswith(("python", "pip")))
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    return conda, pip


def test_every_pip_requirement_is_in_environment_yml_with_the_same_bound():
    conda, pip = conda_requirements()
    pip_section = dict(split_requirement(line) for line in pip if not line.startswith("-e"))
    for name, spec in pyproject_requirements().items():
        if name in PIP_ONLY:
            assert pip_section.get(name) == spec, f"{name}{spec} belongs in environment.yml's pip: section"
        else:
            conda_name = CONDA_NAMES.get(name, name)
            assert conda.get(conda_name) == spec, f"environment.yml should list {conda_name}{spec} (pyproject: {name}{spec})"


def test_environment_yml_has_nothing_pyproject_lacks():
    wanted = {CONDA_NAMES.get(n, n) for n in pyproject_requirements()}
    conda, pip = conda_requirements()
    assert set(conda) <= wanted, f"only in environment.yml: {set(conda) - wanted}"
    assert "-e ." in pip, "environment.yml must install the course package itself (pip: -e .)"


def test_environment_yml_uses_conda_forge_and_the_python_floor():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    floor = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert f"python{floor}" in env["dependencies"]
