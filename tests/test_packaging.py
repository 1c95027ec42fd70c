"""Installable outside the repository: declared dependencies, `digest init`, and the wheel
built, installed in a fresh venv in an empty folder, and run there."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import stat
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.config import MIN_SECRET_LENGTH, load_config
from digest.scaffold import NEWSROOM_FILES

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_top_level_modules() -> set[str]:
    modules = set()
    for path in (REPO / "digest").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.partition(".")[0])
    return modules - set(sys.stdlib_module_names) - {"digest"}


def test_every_module_the_package_imports_is_a_declared_dependency():
    declared = {
        _normalized(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0])
        for requirement in PYPROJECT["project"]["dependencies"]
    }
    owners = importlib.metadata.packages_distributions()
    undeclared = {
        module: owners.get(module)
        for module in _imported_top_level_modules()
        if not declared & {_normalized(dist) for dist in owners.get(module, [])}
    }
    assert undeclared == {}, "add these to [project] dependencies in pyproject.toml"


def test_init_scaffolds_a_newsroom_with_its_own_path_and_a_private_secret(tmp_path):
    newsroom = tmp_path / "newsroom"
    result = CliRunner().invoke(cli, ["init", str(newsroom)])
    assert result.exit_code == 0, result.output
    for name in NEWSROOM_FILES:
        assert (newsroom / name).exists(), name
    assert (newsroom / "templates" / "digest.html").read_text() == (
        REPO / "templates" / "digest.html"
    ).read_text()
    for unit in ("crontab", "digest.service", "digest-run"):
        assert "/srv/digest" not in (newsroom / "cron" / unit).read_text()
    assert f"{newsroom}/cron/digest-run" in (newsroom / "cron" / "crontab").read_text()
    assert f"WorkingDirectory={newsroom}\n" in (newsroom / "cron" / "digest.service").read_text()
    assert os.access(newsroom / "cron" / "digest-run", os.X_OK)
    assert stat.S_IMODE((newsroom / ".env").stat().st_mode) == 0o600
    config = load_config(newsroom / "digest.toml", env={})
    assert len(config.secret_key) >= MIN_SECRET_LENGTH
    assert config.templates_dir == newsroom / "templates"


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path):
    (tmp_path / "digest.toml").write_text("# ours\n")
    result = CliRunner().invoke(cli, ["init", str(tmp_path)])
    assert result.exit_code == 1
    assert f"Not overwriting {tmp_path / 'digest.toml'}" in result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["digest.toml"]
    assert (tmp_path / "digest.toml").read_text() == "# ours\n"


def test_init_writes_the_folders_path_where_the_cron_files_run_it_never_in_a_comment(tmp_path):
    newsroom = tmp_path / "newsroom"
    assert CliRunner().invoke(cli, ["init", str(newsroom)]).exit_code == 0
    for shipped in sorted((REPO / "cron").iterdir()):
        written = (newsroom / "cron" / shipped.name).read_text().splitlines()
        for before, after in zip(shipped.read_text().splitlines(), written, strict=True):
            if before.startswith("#"):
                assert after == before, shipped.name
                assert str(newsroom) not in after and "/srv/digest" not in after, shipped.name
            else:
                assert after == before.replace("/srv/digest", str(newsroom)), shipped.name


def test_init_refuses_a_path_cron_and_systemd_cannot_run_as_written_and_writes_nothing(tmp_path):
    newsroom = tmp_path / "with space"
    result = CliRunner().invoke(cli, ["init", str(newsroom)])
    assert result.exit_code == 1
    assert f"Not scaffolding in '{newsroom}'" in result.output
    assert "Pick a folder whose path has only letters, digits" in result.output
    assert not newsroom.exists()


def _run(*args: str | Path, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.slow
def test_the_wheel_installs_in_a_fresh_venv_and_runs_init_and_demo_outside_the_repo(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "VIRTUAL_ENV"))}
    dist = tmp_path / "dist"
    # The test venv has the build requirements (setuptools from the test extras).
    _run(
        sys.executable,
        "-m",
        "build",
        "--no-isolation",
        "--outdir",
        dist,
        REPO,
        cwd=tmp_path,
        env=env,
    )
    [wheel] = dist.glob("digest-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "digest/py.typed",
        "digest/shipped/digest.toml",
        "digest/shipped/cron/digest-run",
    } <= names
    assert "digest/shipped/templates/digest.html" in names
    assert "digest/shipped/subscribers/example.csv" in names

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path, env=env)
    # As the operators' guide installs it: the shell finds the wheel, pip adds [web].
    readme = (REPO / "docs" / "operators" / "deploying.md").read_text(encoding="utf-8")
    [install] = re.findall(r"^/srv/digest/\.venv/bin/(pip install .*whl.*)$", readme, re.M)
    install = install.replace("/path/to/dist", str(dist))
    _run("bash", "-c", f"{venv}/bin/{install} --quiet", cwd=tmp_path, env=env)
    assert (venv / "bin" / "gunicorn").exists()
    digest = venv / "bin" / "digest"
    empty = tmp_path / "empty"
    empty.mkdir()
    _run(digest, "init", "newsroom", cwd=empty, env=env)
    newsroom = empty / "newsroom"
    assert f"{newsroom}/cron/digest-run" in (newsroom / "cron" / "crontab").read_text()
    output = _run(digest, "demo", cwd=newsroom, env=env)
    assert "imported: 8 added" in output
    assert re.search(r"^daily at .* UTC: sent 8, failed 0, skipped 0, unknown 0$", output, re.M)
    assert len(list((newsroom / "demo" / "outbox").rglob("*.eml"))) == 8
    assert (newsroom / "demo" / "preview" / "daily.html").exists()


def _make_recipe(target: str) -> list[str]:
    lines = (REPO / "Makefile").read_text(encoding="utf-8").split(f"\n{target}:", 1)[1]
    return [line.strip() for line in lines.split("\n\n")[0].splitlines()[1:]]


def test_make_bench_runs_every_benchmark_that_stands_alone():
    run = re.findall(r"benchmarks/\S+\.py", "\n".join(_make_recipe("bench")))
    scripts = sorted((REPO / "benchmarks").glob("*.py"))
    # A script another benchmark runs by name (the floor, beside each send) is part of that one.
    parts = {
        script.name
        for script in scripts
        for other in scripts
        if f'"{script.name}"' in other.read_text(encoding="utf-8")
    }
    assert sorted(run) == [f"benchmarks/{s.name}" for s in scripts if s.name not in parts]


def test_pre_commit_runs_the_same_checks_as_make_lint():
    config = REPO / ".pre-commit-config.yaml"
    check = subprocess.run(
        [Path(sys.executable).parent / "pre-commit", "validate-config", config],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    entries = re.findall(r"^\s+entry: (.+)$", config.read_text(encoding="utf-8"), re.M)
    assert sorted(entries) == sorted(
        line.replace("$(BIN)", ".venv/bin").removesuffix(" .") for line in _make_recipe("lint")
    )
