"""Dependency check and install command: never raises, never touches numpy."""

import sys
import types

import pytest

from rs_ghost_qgis import deps


def test_ready_here(tmp_path):
    status = deps.check(tmp_path)
    assert status.ok, status.problem
    assert "ready" in status.message()


def test_missing_onnxruntime_gives_exact_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    status = deps.check(tmp_path)
    assert not status.ok
    assert "onnxruntime is not installed" in status.problem
    command = status.install_command
    assert command[1:5] == ["-m", "pip", "install", "--upgrade"]
    assert "--no-deps" in command and command[command.index("--target") + 1] == str(tmp_path)
    assert command[-1] == "onnxruntime>=1.14"
    assert not any("numpy" in part for part in command)
    assert deps.format_command(command) in status.message()


def test_too_old_and_broken(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", types.SimpleNamespace(__version__="1.10.0"))
    status = deps.check(tmp_path)
    assert not status.ok and "onnxruntime 1.10.0 is too old" in status.problem

    def broken(name):
        raise AttributeError("_ARRAY_API not found")

    monkeypatch.setattr(deps.importlib, "import_module", broken)
    status = deps.check(tmp_path)
    assert not status.ok and "AttributeError" in status.problem


def test_requirement_follows_numpy():
    assert deps.requirement("onnxruntime", "1.26.4") == "onnxruntime>=1.14"
    assert deps.requirement("onnxruntime", "2.1.0") == "onnxruntime>=1.19"
    assert deps.requirement("shapely", "2.1.0") == "shapely>=2.0"


def test_several_missing_come_in_one_pip_command_and_rasterio_is_not_asked_for(monkeypatch, tmp_path):
    for name in ("shapely", "affine", "rasterio"):
        monkeypatch.setitem(sys.modules, name, None)
    status = deps.check(tmp_path)
    assert "shapely is not installed" in status.problem and "affine is not installed" in status.problem
    assert status.install_command[-2:] == ["shapely>=2.0", "affine>=2.0"]
    assert "rasterio" not in status.message()  # the QGIS faces read and write through QGIS and osgeo


def test_engine_import_failure_is_reported(monkeypatch, tmp_path):
    monkeypatch.setattr(deps, "_engine_problem", lambda: "the plugin's engine does not import in Python 3.9.0 (x)")
    status = deps.check(tmp_path)
    assert not status.ok and "3.9.0" in status.problem and status.install_command == []


def test_install_runs_pip_without_shell_and_reports_failure(monkeypatch, tmp_path):
    calls = []

    class Done:
        returncode = 1
        stdout = ""
        stderr = "/usr/bin/python3: No module named pip"

    def fake_run(command, **kwargs):
        calls.append((command, kwargs))
        return Done()

    monkeypatch.setattr(deps.subprocess, "run", fake_run)
    status = deps.DependencyStatus(ok=False, problem="x", install_command=["py", "-m", "pip", "install", "y"])
    with pytest.raises(deps.DependencyError, match="apt install python3-pip"):
        deps.install(status, tmp_path / "deps")
    assert calls[0][0] == status.install_command and "shell" not in calls[0][1]
    assert (tmp_path / "deps").is_dir()


def test_deps_folder_is_per_python(tmp_path):
    folder = deps.deps_folder(tmp_path)
    assert folder.parent == tmp_path / "rs_ghost_qgis" / "deps"
    assert folder.name == f"python{sys.version_info.major}{sys.version_info.minor}"
    deps.activate(folder)  # absent: not added
    assert str(folder) not in sys.path
