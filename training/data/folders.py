"""Image trees labelled by folder: class-folder layouts (EuroSAT, AID, UC Merced, NWPU-RESISC45)
and RSOD's layout (one folder per category, images in a subfolder next to the annotations).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.errors import DataError

from .images import IMAGE_SUFFIXES
from .splits import stratified_split

AUTO_SPLIT_CSVS = ("train.csv", "validation.csv")
_SUFFIX_LIST = ", ".join(sorted(IMAGE_SUFFIXES))


@dataclass
class FileList:
    """Image files as POSIX paths relative to the tree's root, with their labels."""

    files: np.ndarray  # str
    labels: np.ndarray  # int64

    def take(self, indices: np.ndarray) -> FileList:
        """The files at ``indices``."""
        return FileList(self.files[indices], self.labels[indices])


@dataclass
class Tree:
    """What a folder tree holds: its layout, class names (index = label) and every image."""

    kind: str  # "class_folders" or "rsod"
    class_names: list[str]
    all_files: FileList


def scan_tree(root: Path) -> Tree:
    """Find the class folders under ``root`` and their images (searched recursively).

    Class names come from root/label_map.json ({name: label}) when present, else from the
    sorted folder names. The layout is "rsod" when every class folder keeps its images in
    subfolders (RSOD's <category>/JPEGImages/ beside <category>/Annotation/), else
    "class_folders". Non-image files, such as annotations, are ignored.
    """
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
    if not folders:
        raise DataError(
            f"{root} holds no class folders. Put the images in one subfolder per class "
            "(<root>/<ClassName>/*.jpg) or point the source at the folder that holds them."
        )
    files_by_folder = {name: _images_under(root, name) for name in folders}
    empty = [name for name, files in files_by_folder.items() if not files]
    if empty:
        raise DataError(
            f"Class folder(s) {', '.join(empty)} in {root} hold no images ({_SUFFIX_LIST}). "
            "Add images to them or remove the empty folders."
        )
    class_names = _class_names(root, folders)
    if len(class_names) < 2:
        raise DataError(
            f"{root} holds a single class folder ({class_names[0]}); a classifier needs at least two. "
            "Point the source at the folder that holds one subfolder per class."
        )
    files, labels = [], []
    for label, name in enumerate(class_names):
        files += files_by_folder[name]
        labels += [label] * len(files_by_folder[name])
    in_subfolders = all(all(f.count("/") > 1 for f in files_by_folder[name]) for name in folders)
    return Tree(
        kind="rsod" if in_subfolders else "class_folders",
        class_names=class_names,
        all_files=FileList(np.array(files, dtype=str), np.array(labels, dtype=np.int64)),
    )


def _images_under(root: Path, folder: str) -> list[str]:
    found = []
    for directory, subdirs, names in os.walk(root / folder):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        relative = Path(directory).relative_to(root).as_posix()
        found += [f"{relative}/{n}" for n in names if Path(n).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def _class_names(root: Path, folders: list[str]) -> list[str]:
    label_map_path = root / "label_map.json"
    if not label_map_path.is_file():
        return folders
    fix = f"Fix {label_map_path} to map each class folder name to a label 0..N-1, or delete it."
    try:
        label_map = json.loads(label_map_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"{label_map_path} cannot be read ({error}). {fix}") from error
    if not isinstance(label_map, dict) or sorted(label_map.values()) != list(range(len(label_map))):
        raise DataError(f"{label_map_path} is not a map of class names to the labels 0..N-1. {fix}")
    if set(label_map) != set(folders):
        raise DataError(
            f"{label_map_path} and the class folders disagree: folders without a label: "
            f"{sorted(set(folders) - set(label_map)) or 'none'}; labels without a folder: "
            f"{sorted(set(label_map) - set(folders)) or 'none'}. {fix}"
        )
    return sorted(label_map, key=label_map.get)


def choose_splits(
    root: Path, tree: Tree, split_csv: str | None, val_csv: str | None, val_fraction: float, seed: int
) -> tuple[FileList, FileList, dict]:
    """Return (train, val, description of the split) from the CSVs or a stratified split.

    With no CSV given, root/train.csv and root/validation.csv are used when both exist (the
    EuroSAT convention). Only ``split_csv``: its rows are split stratified. Only ``val_csv``:
    the rest of the tree is the training split.
    """
    if split_csv is None and val_csv is None and all((root / name).is_file() for name in AUTO_SPLIT_CSVS):
        split_csv, val_csv = AUTO_SPLIT_CSVS
    train_rows = read_split_csv(_find_csv(root, split_csv), root, tree) if split_csv else None
    val_rows = read_split_csv(_find_csv(root, val_csv), root, tree) if val_csv else None
    description = {"split_csv": split_csv, "val_csv": val_csv}
    if train_rows is not None and val_rows is not None:
        return train_rows, val_rows, {"split": "csv", **description}
    if val_rows is not None:
        rest = ~np.isin(tree.all_files.files, val_rows.files)
        return tree.all_files.take(np.flatnonzero(rest)), val_rows, {"split": "csv", **description}
    pool = train_rows if train_rows is not None else tree.all_files
    train, val = stratified_split(pool.labels, val_fraction, seed)
    return pool.take(train), pool.take(val), {"split": "stratified", "val_fraction": val_fraction, **description}


def _find_csv(root: Path, name: str) -> Path:
    for candidate in (Path(name), root / name):
        if candidate.is_file():
            return candidate
    raise DataError(f"Split CSV {name} was found neither as given nor in {root}. Fix the path or leave it out.")


def read_split_csv(path: Path, root: Path, tree: Tree) -> FileList:
    """Read a ``,Filename,Label,ClassName`` split CSV (Filename relative to ``root``).

    Every file must exist in the tree and every label must be one of the tree's classes;
    ClassName, when present, must agree with the label.
    """
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "Filename" not in columns or "Label" not in columns:
            raise DataError(
                f"{path} has the columns {columns}; a split CSV needs Filename and Label "
                "(and optionally ClassName), like EuroSAT's ',Filename,Label,ClassName'."
            )
        rows = list(reader)
    known = set(tree.all_files.files.tolist())
    files = [row["Filename"].replace("\\", "/") for row in rows]
    missing = [f for f in files if f not in known]
    if missing:
        raise DataError(
            f"{path} names {len(missing)} image(s) that are not under {root}, e.g. {missing[0]}. "
            "Restore the files or remove those rows from the CSV."
        )
    labels = [_row_label(row, path, tree.class_names) for row in rows]
    return FileList(np.array(files, dtype=str), np.array(labels, dtype=np.int64))


def _row_label(row: dict, path: Path, class_names: list[str]) -> int:
    fix = f"Fix the row in {path}; the labels are 0..{len(class_names) - 1} for {', '.join(class_names)}."
    try:
        label = int(row["Label"])
    except (TypeError, ValueError):
        label = -1
    if not 0 <= label < len(class_names):
        raise DataError(f"{path} gives {row['Filename']} the unknown label {row['Label']!r}. {fix}")
    if row.get("ClassName") and row["ClassName"] != class_names[label]:
        raise DataError(
            f"{path} gives {row['Filename']} label {label} but ClassName {row['ClassName']!r}, "
            f"while label {label} is {class_names[label]!r}. {fix}"
        )
    return label
