"""The distribution a user installs: the sdist and wheel, their metadata, dependency resolution on every supported
Python, and the wheel in a fresh virtual environment running the notebooks' Colab cell and the CLI's whole path."""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import types
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

import tfmtl
from tests.conftest import REPO

SUPPORTED_PYTHONS = ("3.10", "3.11", "3.12", "3.13")
UNSUPPORTED_PYTHON = "3.14"
SEAM = {"tensorflow", "tf-keras", "keras", "keras-hub", "tensorflow-text", "tensorflow-recommenders",
        "tensorflow-serving-api"}


def _uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found is None:
        pytest.fail("uv is not installed: run scripts/bootstrap.sh (it comes with the dev extras)")
    return found


def _source_files() -> list[Path]:
    """What git tracks or would track (a clean clone of this tree), else every file but build outputs."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True)
    if listed.returncode == 0 and listed.stdout:
        return [Path(name) for name in listed.stdout.decode().split("\0") if name and (REPO / name).is_file()]
    skip = {".venv", ".git", "build", "dist", "__pycache__", ".pytest_cache", ".hypothesis", "runs"}
    return [p.relative_to(REPO) for p in REPO.rglob("*") if p.is_file() and not skip & set(p.relative_to(REPO).parts)]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m build` (an sdist, then a wheel built from that sdist) on a copy of the tracked source."""
    source = tmp_path_factory.mktemp("source")
    for name in _source_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    return out


def _wheel(dist: Path) -> Path:
    (wheel,) = dist.glob("tfmtl-*.whl")
    return wheel


def _metadata(dist: Path) -> types.SimpleNamespace:
    with zipfile.ZipFile(_wheel(dist)) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(archive.read(name).decode())
    requires = [Requirement(r) for r in message.get_all("Requires-Dist") or []]
    return types.SimpleNamespace(version=message["Version"], requires_python=message["Requires-Python"],
                                 requires=[r for r in requires if r.marker is None or "extra" not in str(r.marker)])


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def test_the_build_gives_an_sdist_and_a_wheel_that_pass_twine_check(dist: Path) -> None:
    assert len(list(dist.glob("tfmtl-*.tar.gz"))) == 1 and _wheel(dist).name.endswith("-py3-none-any.whl")
    checked = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())],
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_wheel_says_which_pythons_and_which_version(dist: Path) -> None:
    metadata = _metadata(dist)
    assert SpecifierSet(metadata.requires_python) == SpecifierSet(">=3.10,<3.14")
    assert all(python in SpecifierSet(metadata.requires_python) for python in SUPPORTED_PYTHONS)
    assert UNSUPPORTED_PYTHON not in SpecifierSet(metadata.requires_python)
    assert metadata.version == tfmtl.__version__
    assert subprocess.run([sys.executable, "-m", "tfmtl.cli", "--version"], capture_output=True,
                          text=True).stdout.strip() == f"tfmtl {tfmtl.__version__}"


def test_the_wheel_takes_ranges_and_the_lock_pins_a_version_inside_each(dist: Path) -> None:
    requires, pins = _metadata(dist).requires, _constraints()
    assert SEAM <= {r.name for r in requires}
    for requirement in requires:
        assert not any(s.operator in ("==", "===") for s in requirement.specifier), \
            f"{requirement}: exact pins belong in constraints.txt, the metadata takes ranges"
        pinned = pins.get(requirement.name.lower().replace("_", "-"))
        assert pinned is not None, f"constraints.txt does not pin {requirement.name}"
        if requirement.marker is None or requirement.marker.evaluate({"python_version": "3.11"}):
            assert requirement.specifier.contains(pinned), f"constraints.txt pins {requirement.name}=={pinned}, " \
                                                           f"outside the metadata's range {requirement.specifier}"


def test_the_wheel_holds_every_module_and_the_package_data(dist: Path) -> None:
    with zipfile.ZipFile(_wheel(dist)) as archive:
        shipped = {n for n in archive.namelist() if n.startswith("tfmtl/")}
    package = {str(p) for p in _source_files() if p.parts[0] == "tfmtl"}
    assert package - shipped == set(), "files of the package missing from the wheel"
    assert "tfmtl/py.typed" in shipped and "tfmtl/_version.py" in shipped


# === Resolution on every supported Python (only 3.11 runs here; resolution is what can be proved) ===
# uv resolves for a target Python with the markers evaluated for it (pip's --python-version applies only to wheel
# tags and Requires-Python: pypa/pip#13296), so uv proves the supported versions and pip the refusal.

@pytest.fixture(scope="module")
def resolutions(dist: Path) -> dict[str, subprocess.CompletedProcess]:
    """Each supported Python: `uv pip compile --python-version X --only-binary :all:` of the wheel, all at once;
    the unsupported one: `pip install --dry-run --python-version X` (pip checks the wheel's Requires-Python)."""
    uv, wheel = _uv(), _wheel(dist)

    def resolve(python: str) -> subprocess.CompletedProcess:
        if python == UNSUPPORTED_PYTHON:
            return subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
                                   "--only-binary=:all:", "--python-version", python, "--target", str(dist / "t"),
                                   str(wheel)], capture_output=True, text=True, timeout=600)
        return subprocess.run([uv, "pip", "compile", "-", "--python-version", python, "--python-platform",
                               "x86_64-manylinux_2_28", "--only-binary", ":all:", "--no-header", "--no-annotate",
                               "--quiet"], input=f"tfmtl @ {wheel.as_uri()}\n", capture_output=True, text=True,
                              timeout=600)

    pythons = (*SUPPORTED_PYTHONS, UNSUPPORTED_PYTHON)
    with concurrent.futures.ThreadPoolExecutor(len(pythons)) as pool:
        return dict(zip(pythons, pool.map(resolve, pythons), strict=True))


@pytest.mark.network
@pytest.mark.parametrize("python", SUPPORTED_PYTHONS)
def test_the_dependencies_resolve_to_binary_wheels(resolutions, python: str) -> None:  # type: ignore[no-untyped-def]
    result = resolutions[python]
    assert result.returncode == 0, f"Python {python}: {result.stderr[-3000:]}"
    resolved = dict(line.split("==", 1) for line in result.stdout.split() if "==" in line)
    resolved = {name.lower().replace("_", "-"): version for name, version in resolved.items()}
    assert SEAM <= set(resolved), SEAM - set(resolved)
    assert resolved["tf-keras"].split(".")[:2] == resolved["tensorflow"].split(".")[:2]  # one TF minor
    assert resolved["tensorflow-text"].split(".")[:2] == resolved["tensorflow"].split(".")[:2]


@pytest.mark.network
def test_python_3_14_is_refused_by_requires_python(resolutions) -> None:  # type: ignore[no-untyped-def]
    result = resolutions[UNSUPPORTED_PYTHON]
    assert result.returncode != 0
    assert "requires a different Python" in result.stderr and "<3.14" in result.stderr


# === The wheel in a fresh virtual environment, installed by the notebooks' own first cell ===

def _colab_cell() -> str:
    import nbformat

    notebook = nbformat.read(REPO / "notebooks" / "01_train_and_evaluate.ipynb", as_version=4)
    return next(cell.source for cell in notebook.cells if cell.cell_type == "code")


def _as_in_colab(python: Path, cell: str, *, preload: str, env: dict[str, str], cwd: Path
                 ) -> subprocess.CompletedProcess:
    """Runs the cell as a Colab kernel would: `google.colab` imported, some libraries already loaded."""
    code = f"import sys, types\nsys.modules['google.colab'] = types.ModuleType('google.colab')\n{preload}\n{cell}"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, server: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the server exited: {server.stderr.read() if server.stderr else ''}"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    pytest.fail(f"the server did not listen on {port} within {seconds} s")


@pytest.mark.slow  # installs the whole stack into a new environment (about two CPU-minutes)
@pytest.mark.network
@pytest.mark.xdist_group("packaging-fresh-venv")  # the slowest test here: free to run beside the resolutions
def test_the_wheel_in_a_fresh_venv_installs_like_colab_and_runs_the_whole_path(  # type: ignore[no-untyped-def]
        dist: Path, tmp_path: Path, movielens_dir: Path) -> None:
    from tests.toy import toy_config, write_toy_schema

    venv, work = tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    uv = _uv()
    subprocess.run([uv, "venv", "-q", "--seed", "--python", sys.executable, str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # A runtime that comes with an older NumPy already loaded, as Colab's does.
    subprocess.run([uv, "pip", "install", "-q", "--python", str(python), "numpy==2.0.2"], check=True, timeout=300)
    tools = tmp_path / "tools"  # uv alone on PATH, as in Colab (not the dev venv's other commands)
    tools.mkdir()
    (tools / "uv").symlink_to(uv)
    path = os.pathsep.join([str(venv / "bin"), str(tools), "/usr/local/bin", "/usr/bin", "/bin"])
    # This machine's environment (certificates, proxies) without anything that points into the dev venv.
    leaks = {"PYTHONPATH", "VIRTUAL_ENV", "TF_USE_LEGACY_KERAS", "PYTHONHOME"}
    env = {**{k: v for k, v in os.environ.items() if k not in leaks}, "PATH": path,
           "TFMTL_SOURCE": str(_wheel(dist)), "UV_CONSTRAINT": str(REPO / "constraints.txt"),
           "TFMTL_DATA_DIR": str(movielens_dir), "TF_CPP_MIN_LOG_LEVEL": "2"}

    first = _as_in_colab(python, _colab_cell(), preload="import numpy", env=env, cwd=work)
    assert first.returncode == -signal.SIGKILL, first.stdout + first.stderr[-3000:]
    assert "Restarting the runtime: numpy 2.0.2 -> " in first.stdout

    again = _as_in_colab(python, _colab_cell(), preload="", env=env, cwd=work)
    assert again.returncode == 0, again.stdout + again.stderr[-3000:]
    assert f"tfmtl {tfmtl.__version__}" in again.stdout and "tf.keras is Keras 2" in again.stdout

    def tfmtl_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / "tfmtl"), *args], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=work)

    where = subprocess.run([str(python), "-c", "import tfmtl; print(tfmtl.__file__)"], capture_output=True,
                           text=True, env=env, cwd=work, check=True).stdout.strip()
    assert Path(where).is_relative_to(venv), f"tfmtl imported from {where}, not from the installed wheel"
    assert tfmtl_cli("--version").stdout.strip() == f"tfmtl {tfmtl.__version__}"
    assert tfmtl_cli("--help").returncode == 0
    info = tfmtl_cli("data", "info", "ml-100k", "--json")
    assert info.returncode == 0, info.stderr[-2000:]
    assert json.loads(info.stdout)["ratings"] == 100_000

    schema = write_toy_schema(tmp_path)
    toy_config().to_file(work / "config.json")
    trained = tfmtl_cli("train", "--config", "config.json", "--dataset", str(schema), "--epochs", "1",
                        "--output", "run", "--no-progress", "--json")
    assert trained.returncode == 0, trained.stderr[-3000:]
    # --no-verify: the served answer below checks the export; verification has its own tests (tests/exporting)
    exported = tfmtl_cli("export", "--run", "run", "--name", "toy", "--base", "models", "--no-verify", "--json")
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert json.loads(exported.stdout)["version"] == 1

    port = _free_port()
    server = subprocess.Popen([str(venv / "bin" / "tfmtl"), "serve", "--model-base", "models", "--name", "toy",
                               "--port", str(port)], env=env, cwd=work, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_port(port, server, seconds=180)
        queried = tfmtl_cli("query", "--address", f"127.0.0.1:{port}", "--name", "toy", "--user-id", "u0",
                            "-k", "3", "--timeout", "60", "--json")
        assert queried.returncode == 0, queried.stderr[-3000:]
        result = json.loads(queried.stdout)
        assert result["version"] == 1 and len(result["items"]) == 3
        assert {item["item_id"] for item in result["items"]} <= {f"i{i}" for i in range(30)}
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
