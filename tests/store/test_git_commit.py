"""``env.json``'s ``git_commit``: the commit of mimax's own source checkout, and ``unknown`` for an installed
mimax, even one inside the user's git repository (a project-local virtual environment)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "mimax"


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def copy_mimax(package_parent: Path) -> None:
    shutil.copytree(SRC, package_parent / "mimax", ignore=shutil.ignore_patterns("__pycache__"))


def recorded_commit(package_parent: Path, cwd: Path) -> str:
    """``git_commit()`` of the copy of mimax in ``package_parent``, run from ``cwd``."""
    code = "from mimax.store.rundir import git_commit; print(git_commit())"
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(package_parent)})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_an_installed_mimax_inside_a_user_repository_records_no_commit(tmp_path):
    project = tmp_path / "project"
    site = project / ".venv" / "lib" / "python3" / "site-packages"
    site.mkdir(parents=True)
    (project / ".gitignore").write_text(".venv/\n")
    (project / "train.sh").write_text("mimax train\n")
    git(project, "init", "-q")
    git(project, "add", ".")
    git(project, "commit", "-qm", "user project")
    copy_mimax(site)
    assert recorded_commit(site, cwd=project) == "unknown"  # not the project's commit


def test_a_source_checkout_records_its_commit_and_dirtiness(tmp_path):
    checkout = tmp_path / "mimax_checkout"
    (checkout / "src").mkdir(parents=True)
    copy_mimax(checkout / "src")
    git(checkout, "init", "-q")
    git(checkout, "add", ".")
    git(checkout, "commit", "-qm", "mimax")
    head = git(checkout, "rev-parse", "HEAD")
    assert recorded_commit(checkout / "src", cwd=tmp_path) == head
    with (checkout / "src" / "mimax" / "data" / "imagenet100_classes.txt").open("a") as f:
        f.write("n00000000\n")
    assert recorded_commit(checkout / "src", cwd=tmp_path) == head + "+dirty"
