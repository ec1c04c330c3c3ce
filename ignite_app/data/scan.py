"""Image folders before anything is decoded: find the images, resolve the classes, refuse bad layouts and names.

Two layouts are accepted::

    DIR/train/<class>/<image>       DIR/<class>/<image>
    DIR/val/<class>/<image>         (with --val-split FRACTION: a stratified split, the same for every --seed)

With ``--val-split``, the folders of DIR are the classes, whatever their names (a class may be called ``train``);
without it, DIR/train and DIR/val are the split.

Images may sit in sub-folders of their class folder. Names that start with "." and files without an image
extension (:data:`~ignite_app.data.formats.IMAGE_EXTENSIONS`) are ignored. The classes come from ``--label-map``
(line i = class i) or, without one, from the sorted class folder names.

Listing is cheap at a million files: ``os.scandir`` tells files from folders without a ``stat`` per file, and the
samples end up in flat :class:`~ignite_app.data.pipeline.FileTable` buffers, not in a Python object per file. The
datasets themselves are built by :mod:`ignite_app.data.folder`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ignite_app.data.classnames import by_nfc, name_problem, nfc, same_in_nfc
from ignite_app.data.formats import IMAGE_EXTENSIONS, is_image_file
from ignite_app.data.pipeline import FileTable
from ignite_app.data.samplers import stratified_split
from ignite_app.errors import DataError
from ignite_app.metrics.labelmap import read_label_map

TRAIN, VAL = "train", "val"
MAX_LISTED = 10  # names or files listed in one message


@dataclass(frozen=True)
class ClassList:
    """Class names in index order, where they came from, and how to fix data that disagrees with them."""

    names: tuple[str, ...]
    origin: str  # "the label map labels.txt", "the classes of checkpoint best_model.pt"
    unlisted_fix: str  # for a class folder that is not in the list; may use {name} and {root}
    missing_fix: str  # for a listed class without images
    lines: bool = False  # the names are the lines of a file the user can edit (a label map)

    def entry(self, index: int) -> str:
        """How a message refers to one name of the list: ``line 3`` of a label map, ``class 2`` of a checkpoint."""
        return f"line {index + 1}" if self.lines else f"class {index}"


def label_map_classes(path: Path) -> ClassList:
    """The classes of a label-map file (line i = class i).

    Raises:
        DataError: the file is missing, unreadable, empty, or has a blank or repeated line.
    """
    try:
        names = read_label_map(path)
    except FileNotFoundError:
        raise DataError(f"--label-map {path}: no such file; pass the label-map file (one class name per line), "
                        "or drop --label-map to use the sorted class folder names") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"--label-map {path} cannot be read ({e}); it must be a UTF-8 text file, one class name "
                        "per line") from None
    except ValueError as e:  # blank or duplicate line: read_label_map names the line
        raise DataError(f"{e}; fix the file, then start again") from None
    if len(names) < 2:
        raise DataError(f"--label-map {path} lists a single class ({names[0]!r}): a classifier needs at least 2 "
                        "classes; add a line for each class")
    same = same_in_nfc(names)
    if same:
        raise DataError(f"label map {path}: lines {same[0] + 1} and {same[1] + 1} are the same name "
                        f"({names[same[0]]!r}) in two Unicode forms; keep one of them")
    return ClassList(tuple(names), f"the label map {path}", f"add the line '{{name}}' to {path}, or move the "
                     "folder out of {root}", f"add images there, or remove the line from {path}", lines=True)


def checkpoint_classes(names: Sequence[str], path: Path) -> ClassList:
    """The classes a checkpoint was trained on, as the class list that evaluation data must match."""
    return ClassList(tuple(names), f"the classes of checkpoint {path}",
                     "the model cannot predict it: evaluate on folders of the checkpoint's classes only",
                     "evaluate on data that has every class the model was trained on")


@dataclass(frozen=True)
class FolderScan:
    """The images found, by split (paths and class indices), before any is decoded."""

    classes: tuple[str, ...]
    train: FileTable
    val: FileTable


def scan_folder(data_dir: Path, val_split: float | None, classes: ClassList | None = None,
                evaluation: bool = False) -> FolderScan:
    """Find the images of ``data_dir`` and check the layout and the classes.

    Args:
        data_dir: the ``--data-dir`` folder.
        val_split: the ``--val-split`` fraction (flat layout only).
        classes: the class list to follow (label map, checkpoint); default: the sorted folder names.
        evaluation: find only the images to evaluate: ``DIR/val``, the ``--val-split`` share of a flat folder, or
            every image of a flat folder without ``--val-split``; ``train`` is then empty.

    Raises:
        DataError: a missing or empty folder, a wrong layout, a class folder without images, train and val
            folders with different classes, or folders that disagree with ``classes``.
    """
    roots = _layout(Path(data_dir), val_split, evaluation)
    found = {split: _files_by_class(root) for split, root in roots.items()}
    names = _resolve_classes(found, roots, classes)
    if set(roots) == {TRAIN, VAL} or (evaluation and VAL in roots):
        files = found
    elif val_split is not None:
        train, val = stratified_split(found[TRAIN], val_split)
        files = {TRAIN: train, VAL: val} if not evaluation else {VAL: val}
    else:  # evaluation on a whole flat folder
        files = {VAL: found[TRAIN]}
    # Matched by NFC name. The split above was drawn with the names on disk (each class's random stream is seeded
    # from its name), as before names were normalised: existing runs keep their split.
    index = {nfc(name): i for i, name in enumerate(names)}

    def table(split: str) -> FileTable:
        by_class = {nfc(name): paths for name, paths in files.get(split, {}).items()}
        found = [(by_class.get(name, []), i) for name, i in index.items()]
        return FileTable.from_paths([p for paths, _ in found for p in paths],
                                    [i for paths, i in found for _ in paths])

    scan = FolderScan(names, table(TRAIN), table(VAL))
    if not len(scan.val):
        raise DataError(f"--val-split {val_split} leaves no image of {data_dir} for validation (every class has "
                        "a single image); add images or use DIR/train and DIR/val folders")
    return scan


def _layout(data_dir: Path, val_split: float | None, evaluation: bool) -> dict[str, Path]:
    """The split folders: ``{train, val}`` for DIR/train + DIR/val, ``{train}`` for a flat folder."""
    if not data_dir.exists():
        raise DataError(f"--data-dir {data_dir}: no such folder; pass the folder that holds train/ and val/ (or "
                        "one folder per class)")
    if not data_dir.is_dir():
        raise DataError(f"--data-dir {data_dir} is a file, not a folder; pass the folder that holds train/ and "
                        "val/ (or one folder per class)")
    train, val = data_dir / TRAIN, data_dir / VAL
    if val_split is not None:
        if _is_split_layout(train, val):
            raise DataError(f"--val-split {val_split}: {data_dir} already has train/ and val/ folders, which fix "
                            "the split; drop --val-split")
    elif val.is_dir() and (train.is_dir() or evaluation):
        return {VAL: val} if evaluation else {TRAIN: train, VAL: val}
    elif train.is_dir() and not evaluation:
        raise DataError(f"{data_dir} has a train/ folder but no val/ folder: add {val}/<class>/ folders with "
                        f"validation images, or, if the folders of {data_dir} are the classes (train among them), "
                        "pass --val-split 0.2")
    if not any(_class_folders(data_dir)):
        raise DataError(f"--data-dir {data_dir} holds no class folders; expected {data_dir}/train/<class>/<image> "
                        f"and {data_dir}/val/<class>/<image>, or {data_dir}/<class>/<image> with --val-split 0.2")
    if val_split is None and not evaluation:
        raise DataError(f"{data_dir} has class folders but no train/ and val/ folders: pass --val-split 0.2 to "
                        "hold out 20% of each class for validation, or split the images into "
                        f"{data_dir}/train/<class>/ and {data_dir}/val/<class>/")
    return {TRAIN: data_dir}


def _is_split_layout(train: Path, val: Path) -> bool:
    """Whether DIR/train and DIR/val hold class folders rather than being classes themselves.

    With --val-split a folder named train or val is a class; but when both exist and neither holds an image
    directly (only in sub-folders), DIR is the train/val layout, and --val-split a mistake that would train a
    classifier of "train" against "val".
    """
    return all(folder.is_dir() and not any(is_image_file(p) and p.is_file() for p in folder.iterdir())
               for folder in (train, val))


def _class_folders(root: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def _check_folder_names(folders: Mapping[str, Path]) -> None:
    """Refuse class folder names that cannot be class names, and two folders for one name."""
    for name, folder in folders.items():
        problem = name_problem(name)
        if problem:  # repr: the path may hold the very characters that make it unreadable
            raise DataError(f"class folder {str(folder)!r} has {problem} ({name!r}); rename the folder: a class "
                            "name is one line of visible text")
    same = same_in_nfc(folders)
    if same:
        first, second = (list(folders.values())[i] for i in same)
        raise DataError(f"class folders {first} and {second} have the same name in two Unicode forms; move the "
                        "images of one into the other")


def find_images(folder: str | os.PathLike[str], extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[str]:
    """The image files under ``folder``, recursively: a folder's files (sorted), then its sub-folders' (sorted).

    The order is ``os.walk``'s top-down order with sorted names, the order folder datasets have always used (so a
    seeded split stays the same). Names starting with "." are skipped; links to folders are not followed (no
    cycles). ``os.scandir`` tells files from folders without a ``stat`` per file on the usual file systems: 100,000
    files in 1,000 folders are listed in ~0.1 s (os.walk and Path objects: ~1.3 s), with the page cache warm.

    Args:
        folder: the folder to search.
        extensions: lower-case suffixes with the dot; matched in any case.

    Raises:
        OSError: a folder cannot be read (os.walk would skip it silently).
    """
    suffixes = tuple(e.lower() for e in extensions)
    found: list[str] = []
    pending = [os.fspath(folder)]
    while pending:
        parent = pending.pop()
        files, dirs = [], []
        with os.scandir(parent) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():  # as os.walk: a link to a folder is a folder, listed but not entered
                    if not entry.is_symlink():
                        dirs.append(entry.path)
                elif entry.name.lower().endswith(suffixes):
                    files.append(entry.path)
        found += sorted(files)
        pending += sorted(dirs, reverse=True)  # a stack: the first sub-folder is searched next
    return found


def _files_by_class(root: Path) -> dict[str, list[str]]:
    folders = _class_folders(root)
    if not folders:
        raise DataError(f"{root} holds no class folders; expected {root}/<class>/<image> (one folder per class)")
    _check_folder_names(folders)
    files = {name: find_images(folder) for name, folder in folders.items()}
    empty = [str(folders[name]) for name, images in files.items() if not images]
    if empty:
        raise DataError(f"class folder{'s' if len(empty) > 1 else ''} {_listing(empty)} "
                        f"hold{'' if len(empty) > 1 else 's'} no images ({', '.join(IMAGE_EXTENSIONS)}); add "
                        "images or remove the folder")
    return files


def _resolve_classes(found: Mapping[str, Mapping[str, list[str]]], roots: Mapping[str, Path],
                     classes: ClassList | None) -> tuple[str, ...]:
    if len(found) == 2:
        train, val = by_nfc(found[TRAIN]), by_nfc(found[VAL])
        only_train = sorted(train[key] for key in train.keys() - val.keys())
        only_val = sorted(val[key] for key in val.keys() - train.keys())
        if only_train or only_val:
            raise DataError(f"the class folders of {roots[TRAIN]} and {roots[VAL]} differ (only in train: "
                            f"{_listing(only_train)}; only in val: {_listing(only_val)}); give both the same "
                            "class folders: every class needs training and validation images")
    split, folder_names = next(iter(found.items()))
    root = roots[split]
    if classes is None:
        if len(folder_names) < 2:
            raise DataError(f"{root} has a single class folder, {root / next(iter(folder_names))}: a classifier "
                            "needs at least 2 classes; add a folder of images for each other class")
        return tuple(sorted(folder_names))
    _check_unlisted(folder_names, root, classes)
    on_disk = by_nfc(folder_names)
    missing = [name for name in classes.names if nfc(name) not in on_disk]
    if missing:
        raise DataError(f"class {missing[0]!r} of {classes.origin} has no images: expected them in "
                        f"{root / missing[0]}/; {classes.missing_fix}"
                        + (f" ({len(missing) - 1} more such classes: {_listing(missing[1:])})"
                           if len(missing) > 1 else ""))
    return classes.names


def _check_unlisted(folder_names: Iterable[str], root: Path, classes: ClassList) -> None:
    """Refuse class folders that are not in ``classes``, pointing out a name that differs only by whitespace."""
    listed = by_nfc(classes.names)
    unlisted = sorted(name for name in folder_names if nfc(name) not in listed)
    if not unlisted:
        return
    for name in unlisted:  # a stray space at the end of a label-map line looks like nothing in a message
        for index, entry in enumerate(classes.names):
            if nfc(entry).strip() == nfc(name).strip():
                fix = ("remove the whitespace from the line" if classes.lines and entry != entry.strip()
                       else f"rename the folder to {entry!r}")
                raise DataError(f"class folder {root / name} is not in {classes.origin}: {classes.entry(index)} is "
                                f"{entry!r}, which differs from the folder name {name!r} only by whitespace at its "
                                f"ends; {fix}")
    raise DataError(f"class folder {root / unlisted[0]} is not in {classes.origin} ({len(classes.names)} "
                    f"classes: {_listing(classes.names)}); "
                    # replace, not format: a path of the template may hold braces of its own
                    + classes.unlisted_fix.replace("{name}", unlisted[0]).replace("{root}", str(root))
                    + (f" ({len(unlisted) - 1} more such folders: {_listing(unlisted[1:])})"
                       if len(unlisted) > 1 else ""))


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(map(str, names[:MAX_LISTED]))
    return shown + (f", ... ({len(names)} in all)" if len(names) > MAX_LISTED else "") if names else "none"
