"""The project's own wiring: install files agree, CI runs the README's test command."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _normalise(req: str) -> str:
    return re.sub(r"\s+", "", req).lower()


def test_environment_yml_declares_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["dev"]
    declared = set(map(_normalise, requirements))
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_pip = {_normalise(r) for r in pip_section if not r.startswith("-e")}
    assert conda_pip == declared, {"only in environment.yml": conda_pip - declared,
                                   "only in pyproject.toml": declared - conda_pip}
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python == "python=3.11" and ">=3.11" in project["requires-python"]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    ci = (ROOT / ".ci/run").read_text()
    assert re.search(r"^make test$", ci, re.MULTILINE)


def test_generated_data_is_ignored():
    ignored = (ROOT / ".gitignore").read_text().split()
    for entry in ("/runs/", "/data/", ".venv/"):
        assert entry in ignored
