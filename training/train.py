"""One training stage: a model trained from scratch, alone or distilled from a frozen teacher.

The loop is the same for the teacher (stage 1) and the student (stage 2); only the loss and the
presence of a teacher differ. Every epoch writes ``last.pt`` (enough to resume exactly) and, when
validation accuracy improves, ``best.pt``; plus a CSV/JSON log and a PNG of the curves.

Recipe (from scratch, both VGG-16-BN and G-Ghost): SGD with Nesterov momentum 0.9 and weight
decay 5e-4 (or AdamW, as the small from-scratch EuroSAT CNNs use), a linear warm-up over the
first epoch (at most 10% of the steps), then a cosine decay to zero, stepped per batch. The peak
rate scales with the global batch: 0.1 x batch / 256 for G-Ghost (the RegNet recipe); 0.01 x
batch / 256 for VGG-16 (torchvision's VGG recipe) and twice that for VGG-16-BN; 3e-3 x batch /
256 with AdamW. VGG's 25088-4096-4096 classifier has no batch-norm: at G-Ghost's rate (0.05 at
batch 128) its loss went from 2.5 to 9.4 in the first three steps of a small EuroSAT run.

Inputs are augmented and normalised through the stage's ``InputPipeline`` (training/inputs.py):
the training split's channel mean/std on 0..1 values, exactly what the exported graph and its
model card expect.
"""

from __future__ import annotations

import csv
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from rs_ghost_qgis.core import atomic
from training import distributed, soft_labels
from training.checkpoint import card_bands, load_checkpoint, make_model, model_from_checkpoint, save_checkpoint
from training.data import SHIFT_PROBABILITY, VIEWS, DatasetSplits, ImageArrays, channel_stats, make_loader
from training.distributed import World, sum_across
from training.errors import TrainingError
from training.inputs import InputPipeline, predict, to_device
from training.losses import DistillationLoss, make_criterion
from training.models import count_macs, count_parameters
from training.plots import plot_curves
from training.precision import Precision, choose, hardware, time_steps
from training.recipe import write_stage_recipe
from training.weak import DEFAULT_KINDS, WeakPatches, load_weak_patches, weak_loss

LOG_FIELDS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "img_per_s")


@dataclass
class StageConfig:
    """What one stage trains, and how. Primitives only: it is stored in the checkpoint."""

    model: str
    out: str
    epochs: int = 30
    batch_size: int = 128
    lr: float | None = None  # the peak rate as it is; None: base_lr scaled by the global batch
    base_lr: float | None = None  # peak rate at a global batch of 256; None: default_base_lr's table
    weight_decay: float = 5e-4
    momentum: float = 0.9
    input_size: int | None = None  # None: the data's image size; otherwise resized on the fly
    # Progressive resizing: the first early_fraction of the epochs train at early_input_size
    # (cheaper at a smaller side), the rest at input_size. Validation is always at input_size.
    early_input_size: int | None = None
    early_fraction: float = 0.0
    seed: int = 0
    distill: str = "none"
    distill_options: dict[str, float] = field(default_factory=dict)
    teacher_checkpoint: str | None = None
    soft_labels: str | None = None  # the teacher's logits file; default: beside the teacher checkpoint
    model_options: dict[str, float] = field(default_factory=dict)
    precision: str = "auto"  # auto | bf16 | fp16 | fp32: see training/precision.py
    workers: int = 0
    augment: bool = True
    radiometric: float = SHIFT_PROBABILITY  # share of training images given each radiometric shift
    optimizer: str = "sgd"  # sgd (Nesterov) | adamw
    resume: bool = False
    bn_batches: int = 20  # training batches that re-estimate BatchNorm statistics each epoch (0: off)
    # Weak supervision from near infrared (training/weak.py): L2A patches added to every batch.
    weak_patches: str | None = None  # the .npz of unlabelled L2A patches with B08
    weak_batch: int = 24  # patches added to each batch, as many of each kind
    weak_weight: float = 1.0  # weight of their loss beside the batch's own
    weak_kinds: list[str] = field(default_factory=lambda: list(DEFAULT_KINDS))  # training.weak.KINDS used
    weak_contrast: float = 0.0  # their texture amplitude x U(1 - c, 1 + c) (training.weak.jitter_texture)
    weak_brightness: float = 0.0  # their brightness moved by U(-b, b) on 0..255
    stage: str = "model"  # a label for logs: "teacher", "student", ...


@dataclass
class StageResult:
    """Where a finished stage left its files, and how well it did on the validation split."""

    best_path: Path
    last_path: Path
    best_acc: float
    best_epoch: int
    history: list[dict[str, float]]


OPTIMIZERS = ("sgd", "adamw")


def default_base_lr(model: str, optimizer: str = "sgd") -> float:
    """The peak learning rate at a global batch of 256 for ``model`` and ``optimizer``: the one table of them."""
    if optimizer == "adamw":
        return 3e-3  # the rate of the small from-scratch EuroSAT CNNs (AdamW, one cycle)
    return {"vgg16": 0.01, "vgg16_bn": 0.02}.get(model, 0.1)


def make_optimizer(model: torch.nn.Module, config: StageConfig, lr: float) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum, or AdamW (decoupled weight decay), at peak rate ``lr``.

    fused: one pass over each parameter instead of several (VGG-16's 134 M weights made the
    unfused update 15% of a CPU step).
    """
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=config.weight_decay, fused=True)
    return torch.optim.SGD(
        model.parameters(),
        lr=lr,
        momentum=config.momentum,
        nesterov=True,
        weight_decay=config.weight_decay,
        fused=True,
    )


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train_stage(
    config: StageConfig, data: DatasetSplits, world: World, meta: dict[str, Any] | None = None
) -> StageResult:
    """Train ``config.model`` on ``data`` and return its best checkpoint; only rank 0 writes files.

    ``meta`` (JSON-able) is stored in the checkpoints as it is: data summary, command line, ...
    With ``config.resume``, training continues after the last epoch saved in ``out/last.pt``.
    The steps: losses (teacher's logits, criterion, weak patches), model, input pipeline,
    optimiser, precision, then per epoch: train, re-estimate BatchNorm, validate, record.
    """
    out = Path(config.out)
    seed_everything(config.seed)
    if world.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    if world.is_main:
        write_stage_recipe(asdict(config), out / "config.toml")
    losses = _losses(config, data, world)
    model = _model(config, data, world)
    lr = peak_lr(config, world)
    state = _initial_state(config, data, meta, losses, lr)
    pipeline = InputPipeline.from_checkpoint(state)
    loader = make_loader(
        data.train,
        batch_size=config.batch_size,
        train=True,
        seed=config.seed,
        augmentation=pipeline.augmentation,
        distributed=world.distributed,
        num_workers=config.workers,
    )
    optimizer, scheduler = _optimiser(model, config, lr, len(loader))
    precision, scaler = _precision(config, model, losses, data.train, state, pipeline, world)
    if config.resume and (out / "last.pt").is_file():
        _restore(load_checkpoint(out / "last.pt"), state, model, optimizer, scheduler, scaler, config)
        if world.is_main:
            print(f"{config.stage}: resuming {out / 'last.pt'} after epoch {state['epoch']} of {config.epochs}")

    device_ids = [world.device.index] if world.device.type == "cuda" else None
    net = DistributedDataParallel(model, device_ids=device_ids) if world.distributed else model
    step = _Step(net, *losses, optimizer, scheduler, scaler, pipeline, precision)
    for epoch in range(state["epoch"], config.epochs):
        row = _epoch(step, model, loader, data, config, world, pipeline, epoch)
        _end_epoch(state, row, (model, optimizer, scheduler, scaler), config, world)
    if state["epoch"] == 0:
        raise TrainingError(f"{config.stage}: no epoch was trained; --epochs must be at least 1.")
    return StageResult(out / "best.pt", out / "last.pt", state["best_acc"], state["best_epoch"], state["history"])


def _epoch(
    step: _Step,
    model: nn.Module,
    loader,
    data: DatasetSplits,
    config: StageConfig,
    world: World,
    pipeline: InputPipeline,
    epoch: int,
) -> dict[str, float]:
    """One epoch: train, re-estimate BatchNorm, validate at the ``pipeline``'s full size; the epoch's log row."""
    # Shuffles, augmentations and dropout masks depend on (seed, epoch, rank) only, so a
    # resumed run continues exactly as an uninterrupted one would have.
    loader.sampler.set_epoch(epoch)
    torch.manual_seed(config.seed * 100_003 + epoch * 1_009 + world.rank)
    step.pipeline = pipeline.at_size(training_input_size(config, epoch, pipeline.size))
    started = time.perf_counter()
    loss, acc, terms = _train_epoch(step, loader, config, world, epoch)
    train_seconds = time.perf_counter() - started
    recalibrate_batchnorm(model, data.train, config, world, pipeline, step.precision, step.weak)
    val_loss, val_acc = _validate(model, data.val, config, world, pipeline)
    return {
        "epoch": epoch + 1,
        "lr": step.optimizer.param_groups[0]["lr"],
        "train_loss": loss,
        "train_acc": acc,
        "val_loss": val_loss,
        "val_acc": val_acc,
        "seconds": time.perf_counter() - started,
        "img_per_s": len(loader) * config.batch_size * world.size / max(train_seconds, 1e-9),
        **terms,
    }


def peak_lr(config: StageConfig, world: World) -> float:
    """The peak learning rate: --lr as it is, else the base rate (given or the table's) x global batch / 256."""
    if config.lr:
        return config.lr
    base = config.base_lr or default_base_lr(config.model, config.optimizer)
    return base * config.batch_size * world.size / 256


@dataclass
class _Losses:
    """What the loss needs besides the batch: the teacher's cached logits, the criterion, the weak patches."""

    soft: soft_labels.SoftLabels | None
    weak: WeakPatches | None
    criterion: DistillationLoss

    def __iter__(self):
        return iter((self.soft, self.weak, self.criterion))


def _losses(config: StageConfig, data: DatasetSplits, world: World) -> _Losses:
    """The loss's parts. The teacher comes as its cached logits (soft_labels.SoftLabels): it never runs here."""
    soft = soft_labels_for(config, data, world) if config.distill != "none" else None
    criterion = _criterion(config)
    weak = _weak_patches(config, data) if config.weak_patches else None
    return _Losses(soft, weak, criterion)


def _model(config: StageConfig, data: DatasetSplits, world: World) -> nn.Module:
    """The freshly initialised network on the device, in channels_last (oneDNN and cuDNN run NHWC fastest)."""
    model = make_model(config.model, len(data.class_names), config.model_options).to(world.device)
    return model.to(memory_format=torch.channels_last)


def _optimiser(model: nn.Module, config: StageConfig, lr: float, steps_per_epoch: int):
    """The optimiser at peak rate ``lr`` and its per-step warm-up and cosine schedule."""
    optimizer = make_optimizer(model, config, lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(steps_per_epoch, config.epochs))
    return optimizer, scheduler


def _precision(
    config: StageConfig,
    model: nn.Module,
    losses: _Losses,
    arrays: ImageArrays,
    state,
    pipeline: InputPipeline,
    world: World,
):
    """The number format of the steps (recorded in ``state``) and the gradient scaler it needs."""
    precision = _choose_precision(config, model, losses.soft, losses.criterion, arrays, pipeline, world)
    scaler = torch.amp.GradScaler("cuda", enabled=precision.dtype == torch.float16)
    state["precision"] = {"name": precision.name, "reason": precision.reason, "hardware": hardware()}
    if world.is_main:
        print(f"{config.stage}: {precision.name} ({precision.reason}) on {state['precision']['hardware']}")
    return precision, scaler


def _end_epoch(state: dict[str, Any], row: dict[str, float], training, config: StageConfig, world: World) -> None:
    """Record the epoch's row; on the main process save the checkpoints and logs and print the line."""
    improved = _record(state, row)
    if not world.is_main:
        return
    _save_epoch(state, *training, Path(config.out), improved)
    terms = {name: value for name, value in row.items() if name not in LOG_FIELDS}
    print(
        f"{config.stage} epoch {row['epoch']}/{config.epochs}: train loss {row['train_loss']:.4f} "
        f"acc {100 * row['train_acc']:.2f}% | val loss {row['val_loss']:.4f} acc {100 * row['val_acc']:.2f}% | "
        f"{row['seconds']:.1f} s, {row['img_per_s']:.0f} img/s | terms "
        + " ".join(f"{name.removeprefix('train_')} {value:.4f}" for name, value in terms.items())
    )


def _initial_state(config, data, meta, losses: _Losses, lr) -> dict[str, Any]:
    image_size = int(data.train.images.shape[1])
    mean, std = channel_stats(data.train)
    return {
        "architecture": config.model,
        "num_classes": len(data.class_names),
        "model_options": dict(config.model_options),
        "class_names": list(data.class_names),
        "input_size": config.input_size or image_size,
        "image_size": image_size,
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "config": asdict(config),
        "meta": meta or {},
        "teacher": _teacher_info(losses.soft.meta) if losses.soft else None,
        "lr": lr,
        "distill": {"method": config.distill, **losses.criterion.hyperparameters},
        "weak": losses.weak.info if losses.weak else None,
        "epoch": 0,
        "best_acc": -1.0,
        "best_epoch": 0,
        "history": [],
    }


def training_input_size(config: StageConfig, epoch: int, input_size: int) -> int:
    """The side the network trains at in ``epoch`` (0-based): early_input_size during the early epochs."""
    # At least the last epoch trains at the full size, whatever the rounding.
    early_epochs = min(round(config.early_fraction * config.epochs), config.epochs - 1)
    if config.early_input_size and epoch < early_epochs:
        return config.early_input_size
    return input_size


def _record(state: dict[str, Any], row: dict[str, float]) -> bool:
    """Append an epoch's row; return whether it is the best validation accuracy so far."""
    state["history"].append(row)
    state["epoch"] = int(row["epoch"])
    improved = row["val_acc"] > state["best_acc"]
    if improved:
        state["best_acc"], state["best_epoch"] = row["val_acc"], int(row["epoch"])
    return improved


@dataclass
class Teacher:
    """A frozen teacher: its network, its own input pipeline (normalisation, input size), and what to record."""

    network: nn.Module
    pipeline: InputPipeline
    info: dict[str, Any]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Logits for 0..1 images, without gradients."""
        with torch.no_grad():
            return self.network(self.pipeline.network_input(images))


def load_teacher(checkpoint: str | Path, class_names: list[str], device: torch.device) -> Teacher:
    """A trained checkpoint as a frozen teacher for data with ``class_names``."""
    state = load_checkpoint(checkpoint)
    if list(state["class_names"]) != list(class_names):
        raise TrainingError(
            f"the teacher {checkpoint} was trained on classes {state['class_names']}, but the data "
            f"has {list(class_names)}; train the teacher on the same data."
        )
    network = model_from_checkpoint(state).to(device)
    network.requires_grad_(False)
    network = network.to(memory_format=torch.channels_last)
    channels = len(state["mean"])
    info = {
        "architecture": state["architecture"],
        "checkpoint": str(checkpoint),
        "input_size": state["input_size"],
        "val_top1": state.get("best_acc"),
        "parameters": count_parameters(network),
        "macs": count_macs(network, int(state["input_size"]), channels),
    }
    return Teacher(network, InputPipeline.from_checkpoint(state), info)


def soft_labels_for(config: StageConfig, data: DatasetSplits, world: World) -> soft_labels.SoftLabels:
    """The teacher's logits for every training image and view: read when current, else computed once."""
    fingerprint = soft_labels.data_fingerprint(data.train, data.class_names)
    teacher_sha = soft_labels.file_sha256(config.teacher_checkpoint) if config.teacher_checkpoint else None
    if config.soft_labels:
        labels = soft_labels.load(config.soft_labels)
        reason = soft_labels.stale_reason(labels, fingerprint, teacher_sha)
        if reason:
            raise TrainingError(
                f"--soft-labels {config.soft_labels} cannot be used: {reason}. Give the file made for this data "
                "and teacher, or drop --soft-labels to compute them from --teacher-checkpoint."
            )
        return _on_device(labels, world, config.soft_labels)
    if not config.teacher_checkpoint:
        raise TrainingError(
            f"--distill {config.distill} needs a teacher: give --teacher-checkpoint PATH (or --soft-labels FILE)."
        )
    path = soft_labels.default_path(config.teacher_checkpoint)
    if world.is_main:
        current = path.is_file() and not soft_labels.stale_reason(soft_labels.load(path), fingerprint, teacher_sha)
        if not current:
            _compute_soft_labels(config, data, world, path, fingerprint, teacher_sha)
    distributed.barrier(world)
    return _on_device(soft_labels.load(path), world, path)


def _compute_soft_labels(config, data: DatasetSplits, world: World, path: Path, fingerprint: str, sha: str) -> None:
    teacher = load_teacher(config.teacher_checkpoint, data.class_names, world.device)
    precision = choose(config.precision, world.device)
    count = len(data.train) * VIEWS
    print(f"{config.stage}: computing the teacher's logits for {len(data.train)} images x {VIEWS} views ({path})")
    started = time.perf_counter()
    with tqdm(total=count, desc="soft labels", unit="img", disable=not world.is_main) as progress:

        def forward(images: torch.Tensor) -> torch.Tensor:
            with precision.autocast(world.device):
                logits = teacher(images.to(world.device).contiguous(memory_format=torch.channels_last))
            progress.update(len(images))
            return logits.float().cpu()

        logits = soft_labels.compute(forward, data.train, batch_size=config.batch_size)
    seconds = time.perf_counter() - started
    meta = {
        **teacher.info,
        "teacher_sha256": sha,
        "data_sha256": fingerprint,
        "class_names": list(data.class_names),
        "views": "v >= 4: left-right flip, then v % 4 quarter turns (training.data.dihedral)",
        "precision": precision.name,
        "seconds": round(seconds, 1),
        "img_per_s": round(count / max(seconds, 1e-9), 1),
    }
    soft_labels.save(path, logits, meta)


def _on_device(labels: soft_labels.SoftLabels, world: World, path: str | Path) -> soft_labels.SoftLabels:
    # The file's own hash goes into the card: which logits the student learned from, exactly.
    meta = {**labels.meta, "soft_labels": Path(path).name, "soft_labels_sha256": soft_labels.file_sha256(path)}
    return soft_labels.SoftLabels(labels.logits.to(world.device), meta)


def _teacher_info(meta: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "architecture",
        "checkpoint",
        "input_size",
        "val_top1",
        "parameters",
        "macs",
        "teacher_sha256",
        "soft_labels",
        "soft_labels_sha256",
    )
    return {key: meta.get(key) for key in keys}


def _weak_patches(config: StageConfig, data: DatasetSplits) -> WeakPatches:
    """The weakly labelled L2A patches, mapped onto the training images' values (training/weak.py)."""
    channels = data.train.images.shape[-1]
    weak = load_weak_patches(
        config.weak_patches,
        data.class_names,
        card_bands(data.class_names, channels),
        data.train.images,
        config.weak_kinds,
    )
    counts = ", ".join(f"{count} {kind}" for kind, count in weak.info["patches"].items())
    print(f"{config.stage}: weak supervision from NIR on {counts} L2A patches, {config.weak_batch} a batch")
    return weak


def _criterion(config: StageConfig) -> DistillationLoss:
    try:
        return make_criterion(config.distill, **config.distill_options)
    except ValueError as error:
        raise TrainingError(str(error)) from None


def _warmup_cosine(steps_per_epoch: int, epochs: int) -> Callable[[int], float]:
    total = max(1, steps_per_epoch * epochs)
    warmup = max(1, min(steps_per_epoch, total // 10))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return factor


def _choose_precision(
    config, model, soft, criterion, arrays: ImageArrays, pipeline: InputPipeline, world: World
) -> Precision:
    """``config.precision`` resolved for this device; auto on a bf16 CPU measures one real batch."""
    count = min(config.batch_size, len(arrays))
    images = torch.from_numpy(arrays.images[:count]).permute(0, 3, 1, 2).float().div_(255)
    images, labels = to_device(images, torch.from_numpy(arrays.labels[:count]).long(), world.device)
    indices = torch.arange(count, device=world.device)
    teacher_logits = soft(indices, torch.zeros_like(indices)) if soft else None

    def probe(dtype):
        def step() -> float:
            with torch.autocast(world.device.type, dtype=dtype, enabled=dtype is not None):
                logits = model(pipeline.network_input(images))
            loss = criterion(logits.float(), teacher_logits, labels, 0.0)
            loss.backward()
            model.zero_grad(set_to_none=True)
            return loss.item()

        return time_steps(step)

    try:
        return choose(config.precision, world.device, probe if world.device.type == "cpu" else None)
    except ValueError as error:
        raise TrainingError(str(error)) from None


@dataclass
class _Step:
    """What one optimisation step needs."""

    net: nn.Module
    soft: soft_labels.SoftLabels | None  # the teacher's cached logits
    weak: WeakPatches | None  # weakly labelled L2A patches that join every batch
    criterion: DistillationLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    pipeline: InputPipeline  # at this epoch's input size
    precision: Precision


def _train_epoch(step: _Step, loader, config: StageConfig, world: World, epoch: int) -> tuple[float, float, dict]:
    """Train one epoch: mean loss, accuracy, and the mean of each loss term (``train_ce``, ...)."""
    step.net.train()
    batches = len(loader)
    totals = [0.0, 0.0, 0.0]  # loss sum, correct, seen
    term_sums: dict[str, float] = {}
    progress = tqdm(loader, desc=f"{config.stage} {epoch + 1}/{config.epochs}", leave=False, disable=not world.is_main)
    for number, batch in enumerate(progress):
        images, labels = to_device(batch.images, batch.labels, world.device)
        # The teacher's logits for the same image in the same flip/turn, without its radiometric shift.
        teacher_logits = step.soft(batch.indices, batch.views).to(world.device) if step.soft else None
        weak_images, allowed = _weak_batch(step.weak, config, world, epoch, number)
        inputs = images if weak_images is None else torch.cat([images, weak_images])
        with step.precision.autocast(world.device):
            all_logits = step.net(step.pipeline.network_input(inputs))
        logits = all_logits[: len(labels)]
        # The losses work in fp32; the epoch is fractional so the DKD warm-up ramps per batch.
        parts = step.criterion.parts(
            logits.float(),
            None if teacher_logits is None else teacher_logits.float(),
            labels,
            epoch + (number + 1) / batches,
        )
        if weak_images is not None:
            parts["weak"] = config.weak_weight * weak_loss(all_logits[len(labels) :], allowed)
        loss = sum(parts.values())
        step.optimizer.zero_grad(set_to_none=True)
        step.scaler.scale(loss).backward()
        step.scaler.step(step.optimizer)
        step.scaler.update()
        step.scheduler.step()
        totals[0] += loss.item() * len(labels)
        totals[1] += (logits.argmax(1) == labels).sum().item()
        totals[2] += len(labels)
        for name, value in parts.items():
            term_sums[name] = term_sums.get(name, 0.0) + value.item() * len(labels)
        progress.set_postfix(loss=f"{totals[0] / totals[2]:.4f}", acc=f"{100 * totals[1] / totals[2]:.1f}%")
    names = sorted(term_sums)
    loss_sum, correct, seen, *term_totals = sum_across(world, totals + [term_sums[name] for name in names])
    terms = {f"train_{name}": total / max(seen, 1) for name, total in zip(names, term_totals, strict=True)}
    return loss_sum / max(seen, 1), correct / max(seen, 1), terms


def _weak_batch(weak: WeakPatches | None, config: StageConfig, world: World, epoch: int, number: int):
    """This batch's weak patches and their allowed classes, or (None, None); drawn from (seed, epoch, batch, rank)."""
    if weak is None:
        return None, None
    generator = torch.Generator().manual_seed(((config.seed * 1_000_003 + epoch) * 100_003 + number) * 31 + world.rank)
    images, allowed = weak.draw(config.weak_batch, generator, config.weak_contrast, config.weak_brightness)
    return to_device(images, allowed, world.device)


def recalibrate_batchnorm(
    model: nn.Module,
    arrays: ImageArrays,
    config: StageConfig,
    world: World,
    pipeline: InputPipeline,
    precision: Precision,
    weak: WeakPatches | None = None,
):
    """Re-estimate BatchNorm running statistics with the current weights ("precise BN").

    The running averages lag behind the weights. After few steps (short runs, small data sets)
    or on tiny feature maps (at 64 px G-Ghost's last stages are 2x2 and its mix branch
    normalises 1x1 maps) eval-mode outputs can then be off by orders of magnitude, although the
    network trains well. Exact averages over ``bn_batches`` un-augmented training batches, the
    same on every process, make validation, checkpoints and the export see the trained weights.
    With weak supervision the batches carry their L2A patches, as in training: statistics of
    the labelled images alone would not be those the network learnt the L2A patches under.
    """
    layers = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    if not layers or config.bn_batches < 1:
        return
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over the batches below
    loader = make_loader(arrays, batch_size=config.batch_size, train=True, seed=config.seed)
    model.train()
    with torch.no_grad(), precision.autocast(world.device):
        for number, batch in enumerate(loader):
            if number == config.bn_batches:
                break
            images, _ = to_device(batch.images, batch.labels, world.device)
            weak_images, _ = _weak_batch(weak, config, world, -1, number)
            inputs = images if weak_images is None else torch.cat([images, weak_images])
            model(pipeline.network_input(inputs))
    for layer, momentum in zip(layers, momenta, strict=True):
        layer.momentum = momentum


def _validate(model, arrays: ImageArrays, config, world, pipeline: InputPipeline) -> tuple[float, float]:
    # Each process scores its own interleaved share of the validation split (no padding, so
    # every image counts once), then the sums are added up.
    share = ImageArrays(arrays.images[world.rank :: world.size], arrays.labels[world.rank :: world.size])
    model.eval()  # the next epoch's net.train() switches back
    logits, labels = predict(model, share, pipeline, world.device, config.batch_size)
    loss = F.cross_entropy(logits, labels, reduction="sum").item() if len(labels) else 0.0
    correct = (logits.argmax(1) == labels).sum().item()
    loss_sum, correct, seen = sum_across(world, [loss, correct, float(len(labels))])
    return loss_sum / max(seen, 1), correct / max(seen, 1)


def _restore(saved, state, model, optimizer, scheduler, scaler, config: StageConfig) -> None:
    if saved["architecture"] != config.model or saved["class_names"] != state["class_names"]:
        raise TrainingError(
            f"cannot resume: {config.out}/last.pt holds a {saved['architecture']} for classes "
            f"{saved['class_names']}; use another --out or drop --resume to start again."
        )
    saved_optimizer = saved["config"].get("optimizer", "sgd")
    if saved_optimizer != config.optimizer:
        raise TrainingError(
            f"cannot resume: {config.out}/last.pt was trained with --optimizer {saved_optimizer}; "
            f"resume with --optimizer {saved_optimizer}, or use another --out."
        )
    model.load_state_dict(saved["state_dict"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    scaler.load_state_dict(saved["scaler"])
    for key in ("epoch", "best_acc", "best_epoch", "history"):
        state[key] = saved[key]


def _save_epoch(state, model, optimizer, scheduler, scaler, out: Path, improved: bool) -> None:
    weights = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    snapshot = {**state, "state_dict": weights}
    if improved:
        save_checkpoint(snapshot, out / "best.pt")
    training = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
    }
    save_checkpoint({**snapshot, **training}, out / "last.pt")
    write_logs(state["history"], out, state["config"]["stage"])


def write_logs(history: list[dict[str, float]], out: Path, title: str) -> None:
    """``log.csv``, ``log.json`` and ``curves.png`` of a stage's epochs."""
    with atomic.atomic_path(out / "log.csv") as tmp, open(tmp, "w", newline="") as handle:
        # The loss terms (train_ce, train_tckd, ...) follow the fixed columns.
        terms = sorted({key for row in history for key in row} - set(LOG_FIELDS))
        writer = csv.DictWriter(handle, fieldnames=[*LOG_FIELDS, *terms])
        writer.writeheader()
        writer.writerows(history)
    atomic.write_text(out / "log.json", json.dumps({"stage": title, "history": history}, indent=2))
    plot_curves(history, out / "curves.png", title=title)
