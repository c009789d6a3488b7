"""`make bench-train`: training speed on this machine, as ratios measured in one run.

Rows (img/s of the real training step: loader, augmentation, forward, loss, backward, fused
SGD; medians of interleaved repeats so that drifting load hits every contender alike):
The student is the bundled one, as its recipe (recipes/eurosat_g_ghost_002_adamw.toml) builds it.
1. The G-Ghost student in fp32 against the precision ``--precision auto`` chooses here.
2. The student without KD against DKD reading the teacher's soft labels (the soft labels are
   random: reading them costs the same whatever they hold). Target: DKD at most 1.15x.
3. The VGG-16-BN teacher in fp32 against the chosen precision (skipped with --quick).

Images are EuroSAT's when ../shared/data is there, else random 64 px images (same cost).
Usage: python bench/train.py [--quick] [--batches N] [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training import train as train_module  # noqa: E402
from training.checkpoint import make_model  # noqa: E402
from training.data import VIEWS, ImageArrays, channel_stats, make_loader  # noqa: E402
from training.distributed import World  # noqa: E402
from training.inputs import InputPipeline  # noqa: E402
from training.losses import make_criterion  # noqa: E402
from training.precision import FP32, choose, hardware  # noqa: E402
from training.recipe import read_recipe  # noqa: E402
from training.soft_labels import SoftLabels  # noqa: E402

EUROSAT = REPO.parent / "shared" / "data" / "eurosat_rgb"
STUDENT_RECIPE = REPO / "recipes" / "eurosat_g_ghost_002_adamw.toml"
CPU = World(rank=0, size=1, device=torch.device("cpu"))


def images(count: int) -> ImageArrays:
    """``count`` EuroSAT training images when available, else random ones of the same shape."""
    if EUROSAT.is_dir():
        from training.data import load_dataset

        train = load_dataset(EUROSAT, image_size=64).train
        chosen = np.random.default_rng(0).choice(len(train), size=count, replace=False)
        return ImageArrays(train.images[chosen], train.labels[chosen])
    rng = np.random.default_rng(0)
    return ImageArrays(rng.integers(0, 256, (count, 64, 64, 3), np.uint8), rng.integers(0, 10, count))


def img_per_s(model_name: str, arrays: ImageArrays, batch: int, precision, distill: str, **options) -> float:
    """Images per second of ``train``'s epoch loop over ``arrays`` (one pass after a warm-up batch)."""
    torch.manual_seed(0)
    model = make_model(model_name, 10, options).to(memory_format=torch.channels_last)
    config = train_module.StageConfig(model=model_name, out="unused", epochs=1, batch_size=batch, stage="bench")
    mean, std = channel_stats(arrays)
    pipeline = InputPipeline(tuple(mean), tuple(std), 64, augment=config.augment, radiometric=config.radiometric)
    loader = make_loader(arrays, batch_size=batch, train=True, seed=0, augmentation=pipeline.augmentation)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    teacher = SoftLabels(torch.randn(len(arrays), VIEWS, 10).half(), {}) if distill != "none" else None
    criterion = make_criterion(distill, **({"warmup_epochs": 0.0} if distill == "dkd" else {}))
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    step = train_module._Step(model, teacher, None, criterion, optimizer, scheduler, scaler, pipeline, precision)
    warm_up = ImageArrays(arrays.images[:batch], arrays.labels[:batch])
    warm_up_loader = make_loader(warm_up, batch_size=batch, train=True, augmentation=pipeline.augmentation)
    train_module._train_epoch(step, warm_up_loader, config, CPU, 0)
    started = time.perf_counter()
    train_module._train_epoch(step, loader, config, CPU, 0)
    return len(loader) * batch / (time.perf_counter() - started)


def compare(label: str, contenders: dict, repeats: int) -> dict[str, float]:
    """Median img/s of each contender over interleaved repeats, printed as a table row."""
    runs: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, measure in contenders.items():
            runs[name].append(measure())
    medians = {name: statistics.median(values) for name, values in runs.items()}
    (first, a), (second, b) = medians.items()
    print(f"| {label} | {first} {a:.0f} img/s | {second} {b:.0f} img/s | {b / a:.2f}x |", flush=True)
    return medians


def main() -> int:
    """Measure every row and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer batches, one repeat, no teacher row")
    parser.add_argument("--batches", type=int, help="batches per measurement (8; quick 3)")
    parser.add_argument("--repeats", type=int, help="interleaved repeats (3; quick 1)")
    args = parser.parse_args()
    batches = args.batches or (3 if args.quick else 8)
    repeats = args.repeats or (1 if args.quick else 3)
    chosen = choose("auto", CPU.device)
    print(f"hardware: {hardware()}; auto precision: {chosen.name} ({chosen.reason})")
    print("| row | A | B | B / A |\n| --- | ---: | ---: | ---: |")
    recipe = read_recipe(STUDENT_RECIPE)
    student, teacher = recipe["student"], "vgg16_bn"
    options = {"stem_stride": recipe["stem_stride"]} if "stem_stride" in recipe else {}
    print(f"student: {student} {options} ({STUDENT_RECIPE.name})")
    arrays = images(128 * batches)
    compare(
        "student fp32 vs chosen precision, batch 128",
        {
            "fp32": lambda: img_per_s(student, arrays, 128, FP32, "none", **options),
            chosen.name: lambda: img_per_s(student, arrays, 128, chosen, "none", **options),
        },
        repeats,
    )
    speeds = compare(
        f"student no KD vs DKD with soft labels ({chosen.name})",
        {
            "no KD": lambda: img_per_s(student, arrays, 128, chosen, "none", **options),
            "DKD": lambda: img_per_s(student, arrays, 128, chosen, "dkd", **options),
        },
        repeats,
    )
    print(f"DKD epoch / no-KD epoch: {speeds['no KD'] / speeds['DKD']:.3f} (target at most 1.15)")
    if not args.quick:
        few = ImageArrays(arrays.images[: 64 * 3], arrays.labels[: 64 * 3])
        compare(
            "teacher fp32 vs chosen precision, batch 64",
            {
                "fp32": lambda: img_per_s(teacher, few, 64, FP32, "none"),
                chosen.name: lambda: img_per_s(teacher, few, 64, chosen, "none"),
            },
            max(1, repeats - 1),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
