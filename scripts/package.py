"""Build the installable plugin zip: dist/rs_ghost_qgis-<version>.zip (`make package`).

The zip holds one top-level folder, rs_ghost_qgis/, laid out as QGIS expects: the package
code, metadata.txt, LICENSE, the icon and the bundled model(s) with their cards under
resources/. No tests, no caches. The staged folder is scanned with Bandit and detect-secrets
(as the QGIS plugin repository does) and the build fails on any finding.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess  # nosec B404  # runs bandit / detect-secrets with argument lists
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "rs_ghost_qgis"
CODE_SUFFIXES = {".py", ".ui", ".qml", ".svg", ".png", ".json", ".html"}  # .html: the user guide (help/)
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache", "tests"}
TOP_FILES = ["metadata.txt", "LICENSE"]
RESOURCE_FILES = ["resources/icon.svg", "resources/icon.png"]
MODEL_SUFFIXES = {".onnx", ".md", ".txt"}
# A model card records the sha256 of the teacher it was distilled from: a checksum, not a secret.
SHA256_FIELD = r'"[a-z_]*sha256": "[0-9a-f]{64}"'


def version() -> str:
    """The plugin version from metadata.txt."""
    for line in (ROOT / "metadata.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("version="):
            return line.split("=", 1)[1].strip()
    raise SystemExit("metadata.txt has no version= line")


def plugin_files() -> list[tuple[Path, str]]:
    """(source, path inside the zip folder) for every file the installed plugin needs."""
    files = []
    for path in sorted((ROOT / PACKAGE).rglob("*")):
        relative = path.relative_to(ROOT / PACKAGE)
        if path.is_file() and path.suffix in CODE_SUFFIXES and not SKIP_DIRS & set(relative.parts):
            files.append((path, relative.as_posix()))
    for name in TOP_FILES + RESOURCE_FILES:
        files.append((ROOT / name, name))
    models = ROOT / "resources" / "models"
    for path in sorted(models.glob("*")) if models.is_dir() else []:
        if path.is_file() and path.suffix in MODEL_SUFFIXES:
            files.append((path, f"resources/models/{path.name}"))
    missing = [str(source) for source, _ in files if not source.is_file()]
    if missing:
        raise SystemExit(f"missing files: {', '.join(missing)}")
    return files


def stage(folder: Path) -> Path:
    """Copy the plugin files into folder/rs_ghost_qgis and return that folder."""
    target = folder / PACKAGE
    shutil.rmtree(target, ignore_errors=True)
    for source, name in plugin_files():
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
    return target


def scan(target: Path) -> list[str]:
    """Bandit and detect-secrets findings in the staged folder ([] when clean)."""
    findings = []
    bandit = subprocess.run(  # nosec B603  # fixed argument list, no shell
        [sys.executable, "-m", "bandit", "-q", "-r", str(target), "-f", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        report = json.loads(bandit.stdout or "{}")
    except json.JSONDecodeError:
        return [f"bandit did not run: {bandit.stderr.strip()[-500:]}"]
    for item in report.get("results", []):
        findings.append(f"bandit {item['test_id']} {item['filename']}:{item['line_number']} {item['issue_text']}")
    secrets = subprocess.run(  # nosec B603  # fixed argument list, no shell
        [sys.executable, "-m", "detect_secrets", "scan", "--all-files", "--exclude-lines", SHA256_FIELD, "."],
        capture_output=True,
        text=True,
        cwd=target,
        check=False,
    )
    try:
        results = json.loads(secrets.stdout or "{}").get("results", {})
    except json.JSONDecodeError:
        return findings + [f"detect-secrets did not run: {secrets.stderr.strip()[-500:]}"]
    for filename, items in results.items():
        findings += [f"detect-secrets {item['type']} {filename}:{item['line_number']}" for item in items]
    return findings


def build_zip(target: Path, zip_path: Path) -> Path:
    """Zip the staged folder with rs_ghost_qgis/ as the only top-level entry."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(target.rglob("*")):
            if path.is_file():
                archive.write(path, Path(PACKAGE) / path.relative_to(target))
    return zip_path


def main(argv: list[str] | None = None) -> int:
    """Stage, scan, zip; exit 1 on scan findings."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="folder for the zip (default dist/)")
    parser.add_argument("--no-scan", action="store_true", help="skip Bandit and detect-secrets (tests only)")
    args = parser.parse_args(argv)
    target = stage(ROOT / "build" / "package")
    if not list((target / "resources" / "models").glob("*.onnx")):
        print("warning: no bundled model in resources/models; the zip works with model files only", file=sys.stderr)
    if not args.no_scan:
        findings = scan(target)
        if findings:
            print("security scan found problems; no zip written:\n  " + "\n  ".join(findings), file=sys.stderr)
            return 1
    zip_path = build_zip(target, args.out / f"{PACKAGE}-{version()}.zip")
    print(zip_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
