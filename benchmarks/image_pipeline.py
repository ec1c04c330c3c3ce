"""Images/s of the image pipeline beside what a user would write with torchvision, on real-photo JPEGs.

Generates ``--images`` JPEGs of about 500x375 (a typical ImageNet photo; a fifth of them portrait) cut from the
photos that ship with scikit-learn (``china.jpg``, ``flower.jpg``) and matplotlib (``grace_hopper.jpg``), at random
scales, positions and JPEG qualities, in 10 class folders. Then measures, in one process and side by side (the
configurations take turns, epoch by epoch, so a change in the machine's load hits them all alike), images/s of one
training epoch at ``--image-size``:

- **torchvision baseline**: ``ImageFolder`` + ``RandomResizedCrop`` + ``RandomHorizontalFlip`` + ``ToTensor`` +
  ``Normalize`` in a shuffled ``DataLoader``: what a user would write in ten lines;
- **pipeline**: the app's path: decode (torchvision's libjpeg-turbo), shrink to the source size, seeded
  ``RandomResizedCrop`` + flip on uint8, uint8 batches (normalised later on the device);
- **pipeline + cache**: the same reading ``--cache`` (epochs after the first; the first, which fills it, is shown
  apart);
- **decode only**: decoding the files and nothing else, the limit without a cache.

Workers are persistent; each loader runs a warm-up epoch first. Then, with ``--startup-images N``, generates N
small PNGs in 1,000 class folders and measures what start-up costs on them: the pieces (listing the folder tree,
building the sample table, the file table of the data's fingerprint, the mean and std of a 2,000-image sample), and
the whole of it: ``scripts/train.py --dataset folder --val-split 0.1`` from the command to its first training step
(a ``--handler`` prints the time when the first iteration starts, its batch loaded), minus the time the same command
takes to import its packages: the same command on an empty data folder, which stops (exit 2) right after its
imports, at the scan, timed to its error message (median of 3). Everything generated goes in a temporary folder
that is deleted at the end.

    python benchmarks/image_pipeline.py [--images 900] [--image-size 224] [--epochs 3] [--startup-images 100000]
                                        [--workers 0 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import ImageFolder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ignite_app.data.cache import ImageCache  # noqa: E402
from ignite_app.data.decode import decode_image  # noqa: E402
from ignite_app.data.formats import is_image_file  # noqa: E402
from ignite_app.data.pipeline import FileTable, ImageDataset, ImageLoader  # noqa: E402
from ignite_app.data.scan import find_images  # noqa: E402
from ignite_app.data.stats import sample_pixel_stats  # noqa: E402
from ignite_app.data.transforms import EvalTransform, TrainTransform, source_short_side  # noqa: E402
from ignite_app.runstate.fingerprint import file_fingerprint  # noqa: E402

CLASSES = 10
FIRST_STEP = "first training step at"
# The --handler of the start-up measurement: note the time the first iteration starts (its batch loaded), then leave.
HANDLER = f"""import os, time
from ignite.engine import Events


def attach(app):
    @app.trainer.on(Events.ITERATION_STARTED(once=1))
    def first_step(engine):
        print("{FIRST_STEP}", repr(time.time()), flush=True)
        os._exit(0)
"""



def source_photos() -> list[np.ndarray]:
    """The real photos available offline: scikit-learn's two, and matplotlib's portrait if it is installed."""
    found = []
    for package, relative in (("sklearn", "datasets/images/china.jpg"), ("sklearn", "datasets/images/flower.jpg"),
                              ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg")):
        spec = importlib.util.find_spec(package)
        path = Path(spec.origin).parent / relative if spec and spec.origin else None
        if path is not None and path.is_file():
            with Image.open(path) as image:
                found.append(np.asarray(image.convert("RGB")))
    return found


def write_photos(root: Path, count: int, seed: int = 0) -> None:
    """``root/class_k/NNNNN.jpg``: crops of about 500x375 (or 375x500) at random scales, positions and qualities."""
    rng = np.random.default_rng(seed)
    photos = source_photos()
    for i in range(count):
        source = photos[i % len(photos)]
        width, height = (375, 500) if rng.random() < 0.2 else (500, 375)
        width, height = int(width * rng.uniform(0.9, 1.1)), int(height * rng.uniform(0.9, 1.1))
        scale = max(width / source.shape[1], height / source.shape[0]) * rng.uniform(1.0, 1.8)
        size = (int(np.ceil(source.shape[1] * scale)), int(np.ceil(source.shape[0] * scale)))
        image = Image.fromarray(source).resize(size, Image.Resampling.BICUBIC)
        left, top = rng.integers(0, size[0] - width + 1), rng.integers(0, size[1] - height + 1)
        image = image.crop((left, top, left + width, top + height))
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        folder = root / f"class_{i % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:05d}.jpg", quality=int(rng.integers(75, 96)))


class SeededBatches:
    """Shuffled batches of ``(index, seed)`` keys, a new order and new seeds per epoch: what the app's
    ``EpochBatchSampler(with_seeds=True)`` yields."""

    def __init__(self, size: int, batch_size: int) -> None:
        self.size, self.batch_size, self.epoch = size, batch_size, 0

    def __len__(self) -> int:
        return -(-self.size // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        self.epoch += 1
        g = torch.Generator().manual_seed(self.epoch)
        order, seeds = torch.randperm(self.size, generator=g).tolist(), torch.randint(2**62, (self.size,), generator=g)
        for start in range(0, self.size, self.batch_size):
            yield [(i, int(seeds[i])) for i in order[start:start + self.batch_size]]


class DecodeOnly(Dataset):
    """Decodes file i and returns its shape: the cost of decoding and nothing else."""

    def __init__(self, table: FileTable) -> None:
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> tuple[int, ...]:
        return tuple(decode_image(self.table.path(index)).shape)


def epoch_rate(loader: DataLoader) -> float:
    """Images/s of one pass over ``loader``."""
    start, images = time.perf_counter(), 0
    for batch in loader:  # (images, labels), or a list of decoded shapes
        images += len(batch[0]) if isinstance(batch[0], torch.Tensor) else len(batch)
    return images / (time.perf_counter() - start)


def build_loaders(root: Path, cache_dir: Path, size: int, batch: int, workers: int) -> dict[str, DataLoader]:
    common = {"num_workers": workers, "persistent_workers": workers > 0}
    baseline = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(),
                          T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    classes = sorted(p.name for p in root.iterdir())
    paths = [p for c in classes for p in find_images(root / c)]
    labels = [classes.index(Path(p).parent.name) for p in paths]
    table, side = FileTable.from_paths(paths, labels), source_short_side(size)
    plain = ImageDataset(table, ImageLoader(3, side), TrainTransform(size))
    cached = ImageDataset(table, ImageLoader(3, side, ImageCache(cache_dir / f"w{workers}", side, 3)),
                          TrainTransform(size))
    return {
        "baseline": DataLoader(ImageFolder(str(root), baseline), batch_size=batch, shuffle=True, **common),
        "pipeline": DataLoader(plain, batch_sampler=SeededBatches(len(table), batch), **common),
        "cache": DataLoader(cached, batch_sampler=SeededBatches(len(table), batch), **common),
        "decode": DataLoader(DecodeOnly(table), batch_size=batch, shuffle=True, collate_fn=list, **common),
    }


def measure_loaders(root: Path, cache_dir: Path, size: int, batch: int, epochs: int,
                    worker_counts: list[int]) -> dict[tuple[str, int], list[float]]:
    loaders = {(name, w): loader for w in worker_counts
               for name, loader in build_loaders(root, cache_dir, size, batch, w).items()}
    rates: dict[tuple[str, int], list[float]] = {key: [] for key in loaders}
    for key, loader in loaders.items():  # warm-up: starts the workers; fills the cache (timed: the first epoch)
        rate = epoch_rate(loader)
        if key[0] == "cache":
            rates[("cache fill", key[1])] = [rate]
    for _ in range(epochs):  # the configurations take turns: the same load for all
        for key, loader in loaders.items():
            rates[key].append(epoch_rate(loader))
    return rates


def print_loader_table(rates: dict[tuple[str, int], list[float]], worker_counts: list[int],
                       args: argparse.Namespace) -> None:
    rows = [("torchvision `ImageFolder` + `RandomResizedCrop` + flip + `ToTensor` + `Normalize`", "baseline"),
            ("pipeline: decode, shrink, seeded `RandomResizedCrop` + flip, uint8 batches", "pipeline"),
            ("pipeline + `--cache`, epochs after the first", "cache"),
            ("pipeline + `--cache`, first epoch (fills it; with workers, includes starting them)", "cache fill"),
            ("decode only (the limit without a cache)", "decode")]
    print(f"\n{args.images} JPEGs of about 500x375, --image-size {args.image_size}, batch {args.batch_size}, "
          f"median of {args.epochs} epochs; {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch thread(s) "
          f"in this process, load average "
          f"{os.getloadavg()[0]:.2f} at the end; torch {torch.__version__}\n")
    print("| loader | " + " | ".join(f"{w} workers" for w in worker_counts) + " |")
    print("|---|" + "---:|" * len(worker_counts))
    for label, name in rows:
        cells = []
        for w in worker_counts:
            rate = statistics.median(rates[(name, w)])
            base = statistics.median(rates[("baseline", w)])
            cells.append(f"{rate:,.0f} img/s" + ("" if name == "baseline" else f" ({rate / base:.2f}x)"))
        print(f"| {label} | " + " | ".join(cells) + " |")


def measure_photo_stats(root: Path, size: int) -> None:
    """Seconds per image of the mean-and-std sample on these photos (their validation view), in this process."""
    classes = sorted(p.name for p in root.iterdir())
    paths = [p for c in classes for p in find_images(root / c)]
    dataset = ImageDataset(FileTable.from_paths(paths, [0] * len(paths)), ImageLoader(3, source_short_side(size)),
                           EvalTransform(size))
    seconds, sample = timed(lambda: sample_pixel_stats(dataset, 3))
    print(f"\nmean and std of {sample.images} of these photos (decode, shrink, centre crop, integer sums), 0 workers: "
          f"{seconds:.2f} s, {1000 * seconds / sample.images:.2f} ms per image")


def write_small_pngs(root: Path, count: int, classes: int = 1000) -> None:
    """``count`` 32x32 PNG crops of the sample photos in ``classes`` folders (about 3 kB each)."""
    photos = source_photos()
    rng = np.random.default_rng(1)
    tiles = [np.asarray(Image.fromarray(p).resize((p.shape[1] // 4, p.shape[0] // 4))) for p in photos]
    for k in range(classes):
        (root / f"n{k:08d}").mkdir(parents=True)
    for i in range(count):
        tile = tiles[i % len(tiles)]
        top, left = rng.integers(0, tile.shape[0] - 32), rng.integers(0, tile.shape[1] - 32)
        Image.fromarray(tile[top:top + 32, left:left + 32]).save(root / f"n{i % classes:08d}" / f"{i:07d}.png")


def walk_listing(folder: Path) -> list[Path]:
    """The lister the app had before: os.walk, Path objects, sorted names (for comparison)."""
    found: list[Path] = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(parent, f) for f in sorted(files) if not f.startswith(".") and is_image_file(Path(f))]
    return found


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def measure_startup(root: Path, count: int, work: Path) -> None:
    print(f"\nstart-up on {count:,} 32x32 PNGs in 1,000 class folders (generating them...)", flush=True)
    seconds, _ = timed(lambda: write_small_pngs(root, count))
    print(f"generated in {seconds:.0f} s\n\n| step | seconds |\n|---|---:|")
    classes = sorted(p.name for p in root.iterdir())
    listing, paths = timed(lambda: [find_images(root / c) for c in classes])
    print(f"| list the files (`find_images`, os.scandir), {sum(map(len, paths)):,} found | {listing:.2f} |")
    old, _ = timed(lambda: [walk_listing(root / c) for c in classes])
    print(f"| the same with the former lister (os.walk, Path objects) | {old:.2f} |")
    build, table = timed(lambda: FileTable.from_paths([p for ps in paths for p in ps],
                                                      [k for k, ps in enumerate(paths) for _ in ps]))
    print(f"| build the sample table (flat arrays, {table.path_bytes.nbytes / 2**20:.1f} MB of paths) | {build:.2f} |")
    seconds, fingerprint = timed(lambda: file_fingerprint(root, {"train": table.items()}, classes))
    print(f"| the data's fingerprint: a stat per file on threads, the file table ({len(fingerprint.table) / 2**20:.1f} "
          f"MB compressed) | {seconds:.2f} |")
    dataset = ImageDataset(table, ImageLoader(3, source_short_side(32)), EvalTransform(32))
    for workers in (0, 2):
        seconds, sample = timed(lambda w=workers: sample_pixel_stats(dataset, 3, num_workers=w))
        print(f"| mean and std of a seeded {sample.images:,}-image sample, {workers} workers | {seconds:.2f} |")
    measure_command(root, work)
    seconds, _ = timed(lambda: shutil.rmtree(root))
    print(f"\n(the files were listed warm, just written; deleting them took {seconds:.0f} s)")


def imports_done(command: list[str], env: dict[str, str]) -> float:
    """Seconds from starting ``command`` (on an empty data folder) to its refusal at the scan, the first thing after
    its imports: read as its message arrives, before the interpreter's own exit (which takes a while with torch)."""
    start = time.time()
    with subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env) as process:
        message = process.stderr.readline()  # type: ignore[union-attr]
        seconds = time.time() - start
        process.wait()
    assert process.returncode == 2 and "holds no class folders" in message, message
    return seconds


def measure_command(root: Path, work: Path) -> None:
    """From ``scripts/train.py`` to its first training step, minus the time its imports take."""
    handler = work / "first_step.py"
    handler.write_text(HANDLER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), "--dataset", "folder", "--data-dir", str(root),
               "--val-split", "0.1", "--epochs", "1", "--output-dir", str(work / "runs"), "--no-progress",
               "--handler", f"{handler}:attach"]
    empty = work / "empty"
    empty.mkdir(exist_ok=True)
    imports = [imports_done(command[:5] + [str(empty)] + command[6:], env) for _ in range(3)]
    start = time.time()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith(FIRST_STEP)]
    if not lines:
        print(f"\nthe training command failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return
    total = float(lines[0].split()[-1]) - start
    imported = statistics.median(imports)
    print(f"\n`{' '.join(['python', 'scripts/train.py', *command[2:]])}`\n")
    print("| from the command to the first training step | the same command's imports (median of 3) | start-up "
          "without imports |")
    print("|---:|---:|---:|")
    print(f"| {total:.2f} s | {imported:.2f} s | **{total - imported:.2f} s** |")
    print("\n" + "\n".join(line for line in done.stdout.splitlines() if not line.startswith(FIRST_STEP)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=900, help="0 skips the loader measurement")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="measured epochs per loader (after a warm-up)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--startup-images", type=int, default=100_000, help="0 skips the start-up measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of this process (workers use 1)")
    args = parser.parse_args()
    # One thread, as in the loader's workers: on a busy machine torch's waiting threads spin on the cores the
    # other processes need, which slowed the 0-worker loaders here 5 to 15 times.
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="image_pipeline_") as tmp:
        if args.images:
            root = Path(tmp) / "photos"
            print(f"generating {args.images} JPEGs...", flush=True)
            write_photos(root, args.images)
            rates = measure_loaders(root, Path(tmp) / "cache", args.image_size, args.batch_size, args.epochs,
                                    args.workers)
            print_loader_table(rates, args.workers, args)
            measure_photo_stats(root, args.image_size)
        if args.startup_images:
            measure_startup(Path(tmp) / "small", args.startup_images, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
