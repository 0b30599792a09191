"""The training loop: one network of a THA family on a builder's dataset folder.

    options = TrainOptions(dataset="data/", out="runs/fm", family="tha1", network="face_morpher", steps=3000)
    summary = train(options)          # run/weights.safetensors, run/log.csv, run/grids/, run/checkpoints/

Adam with the write-up's settings (lr 1e-4, betas 0.5 and 0.999), L1 loss (plus the perceptual
loss when a VGG16 weights file is given, from an L1 snapshot: `init_from`). A run folder resumes
by itself: the newest checkpoint's weights, optimizer state, step and RNG states are loaded and
the data order (a permutation per epoch from the seed) skips the batches already done, so a
run killed at any point and started again ends with the same weights as one never stopped
(on the CPU with deterministic algorithms).

Validation every `validate_every` steps and at the end (and at step 0: the untrained network):
RMSE and SSIM on the validation split, beside the identity baseline (output = the network's
input picture); the figures go to log.csv (and TensorBoard when it is installed) and a PNG grid
of inputs, outputs and targets to grids/.

Several processes (torchrun): DistributedDataParallel over gloo (CPU) or NCCL (GPU); the batch
size is the global one, split across the processes; each process reads its shard of every
epoch's permutation (DistributedSampler); only rank 0 writes files.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from . import checkpoint as checkpoints
from . import losses
from .data import Augmentation, TripletDataset, collate_batch
from .tasks import task_class
from .. import weights as weights_io
from ..image import save_rgba_png, tensor_to_rgba
from ...atomic_files import write_text_atomic
from ...errors import UserError
from ...jobs import usable_cpus
from ...progress import progress_bar

PRECISIONS = ("float32", "bfloat16", "float16")
SIZE_STEP = 8  # --image-size a multiple of it: THA1's networks halve a picture three times
GRID_TILE = 128  # the least size of a picture in the validation grid
LOG_FIELDS = ("step", "epoch", "examples", "train_loss", "examples_per_s", "val_rmse", "val_ssim",
              "identity_rmse", "identity_ssim", "val_examples")


class TrainError(UserError, ValueError):
    """Options or a run folder that cannot be trained with; the message says which and why."""


@dataclass
class TrainOptions:
    dataset: str
    out: str
    family: str = "tha1"
    network: str = "face_morpher"
    steps: int = 0  # 0: use epochs
    epochs: int = 1
    batch_size: int = 8  # the global batch (split across processes)
    lr: float = 1e-4
    betas: tuple = (0.5, 0.999)
    device: str = "cpu"
    seed: int = 0
    precision: str = "float32"
    image_size: int = 0  # 0: the schema's (the dataset's) size
    workers: int = 0
    validate_every: int = 0  # 0: only at the start and the end
    validation_limit: int = 0  # 0: every validation example
    hold_out: int = 0  # >0: validate on each training model's last N poses instead of the validation split
    checkpoint_every: int = 0  # 0: only at the end
    keep_checkpoints: int = 2
    base_weights: str = ""  # the family's other networks (and the start for fine-tuning)
    init_from: str = ""  # a checkpoint (.json) or our .safetensors to start the network from
    loss: str = "l1"  # or "perceptual"
    vgg16_weights: str = ""
    perceptual_weight: float = 1.0
    on_bad_image: str = "fatal"
    flip: bool = False
    jitter: float = 0.0
    deterministic: bool = False
    threads: int = 0
    grid_examples: int = 4
    log_examples: bool = False  # examples.csv: the examples each step trained on (every rank's)
    show_progress: bool = True

    # Options a resumed run must share with the checkpoint (the rest, e.g. workers, may change).
    RESUME_KEYS = ("family", "network", "batch_size", "lr", "betas", "seed", "image_size", "loss",
                   "perceptual_weight", "flip", "jitter", "hold_out", "dataset_seed")

    def as_json(self):
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data


@dataclass
class TrainSummary:
    run_dir: Path
    steps: int
    weights: Path
    log: Path
    first_validation: dict = field(default_factory=dict)
    last_validation: dict = field(default_factory=dict)
    train_losses: list = field(default_factory=list)
    resumed_from: int = 0


# --- processes ---------------------------------------------------------------------------------


@dataclass
class Processes:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self):
        return self.rank == 0


def start_processes(device):
    """The process group when started by torchrun (WORLD_SIZE > 1), else one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Processes()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Processes(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name, processes_local_rank=0):
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainError("device cuda asked for, but this torch has no usable CUDA GPU")
        if device.index is None:
            device = torch.device("cuda", processes_local_rank)
        torch.cuda.set_device(device)
    return device


# --- networks ----------------------------------------------------------------------------------


def open_base_weights(options):
    if not options.base_weights:
        return None
    return weights_io.open_weights(options.base_weights, family=options.family)


def build_networks(task, options, base, device):
    """(the network to train, {frozen name: network}), from the base weights or fresh (seeded)."""
    module = weights_io.family_module(task.family)
    variant = base.variant if base else module.VARIANTS[0]
    if task.family == "tha3" and not variant.endswith("float"):
        raise TrainError(f"{options.base_weights}: fine-tune a float variant (half weights lose the small updates)")

    def network(name, need_weights):
        net = module.build_network(name, variant)
        if base is not None:
            net.load_state_dict(base.state_dicts[name], strict=True)
        elif need_weights:
            raise TrainError(f"training {task.family}.{task.network} needs a trained {name}: give --base-weights "
                             f"(a file or folder with it, e.g. the weights.safetensors of its training run)")
        return net.to(device)

    torch.manual_seed(options.seed)  # the fresh network's weights come from the seed
    trained = network(task.network, need_weights=task.family == "tha3")
    frozen = {name: network(name, need_weights=True).eval().requires_grad_(False) for name in task.frozen}
    return trained.train().requires_grad_(True), frozen, variant


def load_initial_weights(model, path, task):
    """Start the network from an earlier run: a checkpoint's .json, or our .safetensors."""
    path = Path(path)
    if path.suffix == ".json":
        record, tensors = checkpoints.read(path, task.name)
        state = checkpoints.model_state(tensors)
    else:
        weight_set = weights_io.open_weights(path, family=task.family)
        state = weight_set.state_dicts[task.network]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise TrainError(f"{path}: does not fit {task.name} ({str(error).splitlines()[0]})") from None


def final_weight_set(task, model, base, variant, seed):
    """Every network of the family, with the trained one replaced: what `pose --weights` loads."""
    module = weights_io.family_module(task.family)
    state_dicts = {}
    torch.manual_seed(seed)
    for name in module.NETWORKS:
        if name == task.network:
            state_dicts[name] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        elif base is not None:
            state_dicts[name] = base.state_dicts[name]
        else:  # not trained yet: freshly initialised, so the file loads (train them next with --base-weights)
            state_dicts[name] = module.build_network(name, variant).state_dict()
    return weights_io.WeightSet(task.family, variant, state_dicts)


# --- the loop ----------------------------------------------------------------------------------


class EpochBatches:
    """Batches of one process: each epoch a permutation of the examples from (seed, epoch), this
    process's share of it (DistributedSampler), cut into batches; resumable at any step."""

    def __init__(self, dataset, options, processes, per_process_batch):
        self.dataset = dataset
        self.sampler = DistributedSampler(dataset, num_replicas=processes.world, rank=processes.rank,
                                          shuffle=True, seed=options.seed, drop_last=True)
        self.batch = per_process_batch
        self.workers = options.workers
        self.steps_per_epoch = len(self.sampler) // per_process_batch
        if self.steps_per_epoch == 0:
            raise TrainError(f"{options.dataset}: {len(dataset)} training examples are fewer than one batch of "
                             f"{options.batch_size}; use a smaller --batch-size")

    def from_step(self, step):
        """Batches from global step `step` on, forever (epoch after epoch)."""
        epoch, skip = divmod(step, self.steps_per_epoch)
        while True:
            self.sampler.set_epoch(epoch)
            self.dataset.set_epoch(epoch)
            indices = list(self.sampler)[: self.steps_per_epoch * self.batch]
            order = indices[skip * self.batch:]
            loader = DataLoader(self.dataset, batch_size=self.batch, sampler=order, num_workers=self.workers,
                                collate_fn=collate_batch, drop_last=False)
            for batch in loader:
                yield epoch, batch
            epoch, skip = epoch + 1, 0


def to_device(batch, device):
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def autocast(options, device):
    if options.precision == "float32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=getattr(torch, options.precision))


class Trainer:
    def __init__(self, options: TrainOptions):
        self.options = options
        self.check_options()
        if options.threads:
            torch.set_num_threads(options.threads)
        if options.deterministic:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        self.processes = start_processes(torch.device(options.device))
        self.device = resolve_device(options.device, self.processes.local_rank)
        self.task_type = task_class(options.family, options.network)
        self.run_dir = Path(options.out)
        self.base = open_base_weights(options)
        size = options.image_size or self.task_type.fixed_image_size or None
        if self.task_type.fixed_image_size and size != self.task_type.fixed_image_size:
            raise TrainError(f"{self.task_type.family.upper()} {options.network} trains at "
                             f"{self.task_type.fixed_image_size}x{self.task_type.fixed_image_size} only, "
                             f"not --image-size {options.image_size}")
        augmentation = Augmentation(flip=options.flip, jitter=options.jitter)
        roles = self.task_type.roles
        self.train_data = TripletDataset(options.dataset, options.family, "train", roles, size, options.on_bad_image,
                                         augmentation=augmentation, seed=options.seed,
                                         hold_out=options.hold_out)
        self.val_data = TripletDataset(options.dataset, options.family, "validation", roles, size,
                                       options.on_bad_image, limit=options.validation_limit or None,
                                       hold_out=options.hold_out)
        self.dataset_seed = self.train_data.config.seed
        model, frozen, self.variant = build_networks(self.task_type, options, self.base, self.device)
        self.task = self.task_type(frozen)
        if options.init_from:
            load_initial_weights(model, options.init_from, self.task)
        self.model = model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=options.lr, betas=tuple(options.betas))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=options.precision == "float16")
        self.perceptual = None
        if options.loss == "perceptual":
            self.perceptual = losses.PerceptualLoss(options.vgg16_weights, options.perceptual_weight).to(self.device)
        self.trained = model
        if self.processes.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.trained = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        per_process = options.batch_size // self.processes.world
        self.batches = EpochBatches(self.train_data, options, self.processes, per_process)
        self.total_steps = options.steps or options.epochs * self.batches.steps_per_epoch

    def check_options(self):
        o = self.options
        if o.precision not in PRECISIONS:
            raise TrainError(f"precision {o.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if o.precision == "float16" and not o.device.startswith("cuda"):
            raise TrainError("float16 autocast needs a CUDA device; use bfloat16 or float32 on the CPU")
        if o.loss not in ("l1", "perceptual"):
            raise TrainError(f"loss {o.loss!r}: choose l1 or perceptual")
        if o.loss == "perceptual" and not o.vgg16_weights:
            raise TrainError("the perceptual loss needs --vgg16-weights FILE (VGG16 weights are never downloaded)")
        if o.loss == "perceptual" and not o.init_from:
            raise TrainError("start the perceptual loss from an L1 snapshot (--init-from): from random weights "
                             "it is unstable (THA1 write-up §6.2.1)")
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if o.batch_size < 1 or o.batch_size % world:
            raise TrainError(f"--batch-size {o.batch_size} must be a positive multiple of the {world} processes")
        if o.steps < 0 or o.epochs < 1:
            raise TrainError("--steps must be >= 0 and --epochs >= 1")
        # (A NaN rate or weight trained NaN weights, or Adam refused it with a traceback; a NaN or
        # large jitter fed the network NaN or colour-inverted pictures; negative counts sliced data.)
        if not (math.isfinite(o.lr) and o.lr > 0):
            raise TrainError(f"--lr {o.lr:g}: the learning rate must be a positive number (e.g. 1e-4)")
        if not (math.isfinite(o.perceptual_weight) and o.perceptual_weight >= 0):
            raise TrainError(f"--perceptual-weight {o.perceptual_weight:g}: must be 0 or a positive number")
        if not (math.isfinite(o.jitter) and 0 <= o.jitter < 1):
            raise TrainError(f"--jitter {o.jitter:g}: the most RGB gain and offset change, from 0 to under 1 (e.g. 0.05)")
        counts = {"--workers": o.workers, "--threads": o.threads, "--validate-every": o.validate_every,
                  "--validation-limit": o.validation_limit, "--checkpoint-every": o.checkpoint_every}
        for option, value in counts.items():
            if value < 0:
                raise TrainError(f"{option} {value}: must be 0 or more")
        cpus = usable_cpus()
        if o.workers > cpus:  # (each a process decoding pictures: 800 for 8 would fork 800)
            raise TrainError(f"--workers {o.workers}: this machine lets this process use {cpus} CPU(s); "
                             "more loader processes only slow each other down")
        if o.image_size < 0 or o.image_size % SIZE_STEP:
            raise TrainError(f"--image-size {o.image_size}: must be a multiple of {SIZE_STEP} (the networks halve a "
                             "picture three times), or 0 for the dataset's size")

    # --- resume

    def resume_options(self):
        data = {k: v for k, v in self.options.as_json().items() if k in TrainOptions.RESUME_KEYS}
        data["dataset_seed"] = self.dataset_seed
        return data

    def resume(self):
        """The step to start from: the newest checkpoint's, or 0."""
        steps = checkpoints.list_checkpoints(self.run_dir)
        if not steps:
            return 0
        _, json_path = checkpoints.checkpoint_paths(self.run_dir, steps[-1])
        try:
            record, tensors = checkpoints.read(json_path, self.task.name)
        except checkpoints.DamagedCheckpointError as error:
            raise checkpoints.DamagedCheckpointError(f"{error}; to resume from the checkpoint before it, delete "
                                              f"{json_path.name} and its .safetensors") from None
        saved = record["options"].get("resume", {})
        now = self.resume_options()
        changed = [f"{k} {saved.get(k)!r} (now {now[k]!r})" for k in now if saved.get(k) != now[k]]
        if changed:
            raise TrainError(f"{json_path}: this run was started with other options: {', '.join(changed)}; "
                             f"use the same options or another --out folder")
        checkpoints.restore(record, tensors, self.model, self.optimizer, source=json_path)
        return int(record["step"])

    def save_checkpoint(self, step, epoch):
        if self.processes.main:
            options = {"resume": self.resume_options(), "all": self.options.as_json()}
            checkpoints.save(self.run_dir, step, epoch, self.task.name, options, self.model, self.optimizer,
                             keep=self.options.keep_checkpoints)

    # --- steps

    def loss(self, outputs, target):
        value = losses.l1_loss(outputs, target)
        if self.perceptual is not None:
            value = value + self.perceptual(outputs, target)
        return value

    def train_step(self, batch):
        batch = to_device(batch, self.device)
        _, target = self.task.source_and_target(batch)
        with autocast(self.options, self.device):
            outputs = self.task.outputs(self.trained, batch)
            loss = self.loss([o.float() for o in outputs], target)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()

    @torch.no_grad()
    def validate(self, step, with_identity):
        """Mean RMSE and SSIM on the validation split (and the identity baseline's), and a grid."""
        loader = DataLoader(self.val_data, batch_size=max(1, self.options.batch_size), shuffle=False,
                            num_workers=self.options.workers, collate_fn=collate_batch)
        scores = {"val_rmse": [], "val_ssim": [], "identity_rmse": [], "identity_ssim": []}
        grid = None
        for batch in loader:
            if batch is None:
                continue
            batch = to_device(batch, self.device)
            source, target = self.task.source_and_target(batch)
            with autocast(self.options, self.device):
                output = self.task.outputs(self.model, batch)[0].float()
            scores["val_rmse"].append(losses.rmse(output, target))
            scores["val_ssim"].append(losses.ssim(output, target))
            if with_identity:
                scores["identity_rmse"].append(losses.rmse(source, target))
                scores["identity_ssim"].append(losses.ssim(source, target))
            if grid is None:
                k = self.options.grid_examples
                grid = (source[:k], output[:k], target[:k])
        result = {name: float(torch.cat(values).mean()) for name, values in scores.items() if values}
        result["val_examples"] = int(sum(len(v) for v in scores["val_rmse"]))
        if grid is not None and self.options.grid_examples:
            write_grid(self.run_dir / "grids" / f"step-{step:09d}.png", *grid)
        return result

    # --- the run

    def run(self):
        options, main = self.options, self.processes.main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.run_dir / "options.json", json.dumps(options.as_json(), indent=1) + "\n")
        start = self.resume()
        log = RunLog(self.run_dir, main, resumed_at=start)
        summary = TrainSummary(self.run_dir, self.total_steps, self.run_dir / "weights.safetensors", log.csv_path,
                               resumed_from=start)
        identity = {}
        if main and start == 0:
            first = self.validate(0, with_identity=True)
            identity = {k: v for k, v in first.items() if k.startswith("identity")}
            summary.first_validation = first
            log.write({"step": 0, "epoch": 0, "examples": 0, **first})
        elif main:
            identity = log.identity()
        progress = self.progress_bar(start)
        examples_done, clock = 0, time.perf_counter()
        step, epoch = start, start // self.batches.steps_per_epoch
        batches = self.batches.from_step(start)
        while step < self.total_steps:
            epoch, batch = next(batches)
            if batch is None:
                continue  # every example of the batch was skipped (on_bad_image=skip)
            loss = self.train_step(batch)
            step += 1
            count = torch.tensor([float(loss), float(len(batch["index"]))])
            if self.processes.world > 1:
                dist.all_reduce(count)
                count[0] /= self.processes.world
            examples_done += int(count[1])
            seen = self.gather_indices(batch["index"]) if options.log_examples else None
            if main:
                rate = examples_done / max(time.perf_counter() - clock, 1e-9)
                summary.train_losses.append(float(count[0]))
                log.write({"step": step, "epoch": epoch, "examples": step * options.batch_size,
                           "train_loss": float(count[0]), "examples_per_s": rate})
                if seen is not None:
                    log.write_examples(step, epoch, seen)
                progress.update(1)
                progress.set_postfix(loss=f"{float(count[0]):.4f}", ex_per_s=f"{rate:.1f}")
            last = step == self.total_steps
            if main and (last or (options.validate_every and step % options.validate_every == 0)):
                result = self.validate(step, with_identity=False)
                summary.last_validation = {**result, **identity}
                log.write({"step": step, "epoch": epoch, "examples": step * options.batch_size, **result, **identity})
            if last or (options.checkpoint_every and step % options.checkpoint_every == 0):
                self.save_checkpoint(step, epoch)
            self.barrier()
        progress.close()
        if main:
            weight_set = final_weight_set(self.task, self.model, self.base, self.variant, options.seed)
            weights_io.save_safetensors(summary.weights, weight_set)
        log.close()
        self.barrier()
        return summary

    def gather_indices(self, indices):
        indices = [int(i) for i in indices]
        if self.processes.world == 1:
            return [indices]
        gathered = [None] * self.processes.world
        dist.all_gather_object(gathered, indices)
        return gathered

    def barrier(self):
        if self.processes.world > 1:
            dist.barrier()

    def progress_bar(self, start):
        return progress_bar(total=self.total_steps, initial=start, unit="step",
                            disable=not (self.options.show_progress and self.processes.main),
                            desc=f"train {self.task.name}")


class RunLog:
    """log.csv (appended: a resumed run adds to it), examples.csv, and TensorBoard when installed."""

    def __init__(self, run_dir, main, resumed_at):
        self.main = main
        self.csv_path = Path(run_dir) / "log.csv"
        self.examples_path = Path(run_dir) / "examples.csv"
        self.board = None
        if not main:
            return
        for path in (self.csv_path, self.examples_path):
            if resumed_at:
                keep_lines_up_to(path, resumed_at)  # a killed run logged steps its checkpoint lacks
            else:
                path.unlink(missing_ok=True)
        new = not self.csv_path.exists()
        self.handle = open(self.csv_path, "a", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.handle, fieldnames=LOG_FIELDS)
        if new:
            self.writer.writeheader()
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional: pip install tensorboard
            SummaryWriter = None
        if SummaryWriter is not None:
            self.board = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def write(self, row):
        if not self.main:
            return
        self.writer.writerow({k: row.get(k, "") for k in LOG_FIELDS})
        self.handle.flush()
        if self.board is not None:
            for key, value in row.items():
                if key not in ("step", "epoch", "examples") and value != "":
                    self.board.add_scalar(key, value, row["step"])

    def write_examples(self, step, epoch, per_rank):
        with open(self.examples_path, "a", encoding="utf-8") as handle:
            for rank, indices in enumerate(per_rank):
                handle.write(f"{step},{epoch},{rank},{' '.join(map(str, indices))}\n")

    def identity(self):
        """The identity baseline of the run's first validation (read back when resuming)."""
        with open(self.csv_path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row.get("identity_rmse"):
                    return {"identity_rmse": float(row["identity_rmse"]), "identity_ssim": float(row["identity_ssim"])}
        return {}

    def close(self):
        if self.main:
            self.handle.close()
            if self.board is not None:
                self.board.close()


def keep_lines_up_to(path, step):
    """Drop the lines of a CSV log (header kept) whose first field is a step after `step`."""
    if not path.exists():
        return
    # (Damaged past its text, a line is dropped: the log is THA Studio's own ASCII, and a resume
    # stopped on its UnicodeDecodeError.)
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines(keepends=True)
    kept = [line for line in lines if "\ufffd" not in line
            and (not line.split(",", 1)[0].isdigit() or int(line.split(",", 1)[0]) <= step)]
    if len(kept) != len(lines):
        write_text_atomic(path, "".join(kept))


def write_grid(path, inputs, outputs, targets):
    """Rows of inputs, outputs and targets (one column per example) on a grey background, as a PNG;
    pictures smaller than 128 pixels (a quick run's) are enlarged by whole pixels to be seen."""
    rows = [tensor_to_rgba(images.float()) for images in (inputs, outputs, targets)]
    scale = max(1, GRID_TILE // rows[0].shape[1])
    rows = [images.repeat(scale, axis=1).repeat(scale, axis=2) for images in rows]
    n, h, w, _ = rows[0].shape
    canvas = np.zeros((3 * h, n * w, 4), np.uint8)
    canvas[..., :3], canvas[..., 3] = 128, 255
    for r, images in enumerate(rows):
        for c, rgba in enumerate(images):
            alpha = rgba[..., 3:4].astype(np.float32) / 255
            tile = canvas[r * h:(r + 1) * h, c * w:(c + 1) * w, :3].astype(np.float32)
            canvas[r * h:(r + 1) * h, c * w:(c + 1) * w, :3] = (rgba[..., :3] * alpha + tile * (1 - alpha)).astype(np.uint8)
    save_rgba_png(canvas, path)


def train(options: TrainOptions):
    trainer = Trainer(options)
    try:
        return trainer.run()
    finally:
        if trainer.processes.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
