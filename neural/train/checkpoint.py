"""Training checkpoints: a .safetensors of tensors and a .json of the rest, both written atomically.

    checkpoints/step-000120.safetensors   model.<key>, optimizer.<param>.<name>, rng.torch
    checkpoints/step-000120.json          step, epoch, task, options, optimizer param groups,
                                          scheduler state, numpy/python RNG states, the tensors' sha256

The JSON is written last and names the tensors file's digest: a checkpoint exists once its JSON
does, and a kill between the two files leaves the previous checkpoint the latest. Loading checks
that the checkpoint is of the same network (a checkpoint of another one is refused, naming it).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from ...atomic_files import write_bytes_atomic, write_text_atomic
from ...errors import UserError
from ... import json_text

FORMAT = "tha_studio.train_checkpoint"
VERSION = 1
FOLDER = "checkpoints"
NAME = re.compile(r"step-(\d+)\.json$")


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be resumed from; names the file and why."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint whose files cannot be read or do not agree (not one of another run)."""


def checkpoint_paths(run_dir, step):
    base = Path(run_dir) / FOLDER / f"step-{step:09d}"
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


def save(run_dir, step, epoch, task_name, options, model, optimizer, scheduler=None, keep=2):
    """Write the checkpoint of `step` and remove all but the `keep` newest."""
    tensors_path, json_path = checkpoint_paths(run_dir, step)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optimizer_state = optimizer.state_dict()
    for param, state in optimizer_state["state"].items():
        for name, value in state.items():
            tensors[f"optimizer.{param}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    data = save_safetensors_bytes(tensors)
    write_bytes_atomic(tensors_path, data)
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    record = {
        "format": FORMAT, "version": VERSION, "step": step, "epoch": epoch, "task": task_name,
        "options": options,
        "optimizer_param_groups": optimizer_state["param_groups"],
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": {"numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
                "python": [python_state[0], list(python_state[1]), python_state[2]]},
        "tensors": {"file": tensors_path.name, "sha256": hashlib.sha256(data).hexdigest()},
    }
    write_text_atomic(json_path, json.dumps(record, indent=1) + "\n")
    for old in list_checkpoints(run_dir)[:-keep]:
        for path in checkpoint_paths(run_dir, old):
            path.unlink(missing_ok=True)
    return json_path


def list_checkpoints(run_dir):
    """The steps of the checkpoints in a run folder, oldest first."""
    folder = Path(run_dir) / FOLDER
    steps = [int(m.group(1)) for p in folder.glob("step-*.json") if (m := NAME.search(p.name))]
    return sorted(steps)


def read(json_path, task_name=None):
    """(record, tensors) of a checkpoint; refuses one of another network or a damaged one."""
    json_path = Path(json_path)
    try:
        record = json_text.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # ValueError: JSONDecodeError, UnicodeDecodeError
        raise DamagedCheckpointError(f"{json_path}: not a readable checkpoint ({error})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"{json_path}: not a THA Studio training checkpoint")
    if task_name is not None and record.get("task") != task_name:
        raise CheckpointError(f"{json_path}: a checkpoint of {record.get('task')}, not of {task_name}")
    problem = record_problem(record)
    if problem:
        raise DamagedCheckpointError(f"{json_path}: a damaged checkpoint ({problem})")
    tensors_path = json_path.with_name(record["tensors"]["file"])
    try:
        data = tensors_path.read_bytes()
    except OSError as error:
        raise DamagedCheckpointError(f"{tensors_path}: cannot read the checkpoint's tensors ({error.strerror})") from None
    if hashlib.sha256(data).hexdigest() != record["tensors"]["sha256"]:
        raise DamagedCheckpointError(f"{tensors_path}: damaged (its sha256 is not the one {json_path.name} records)")
    try:
        tensors = load_safetensors_bytes(data)
    except SafetensorError as error:
        raise DamagedCheckpointError(f"{tensors_path}: not a readable safetensors file ({error})") from None
    return record, tensors


def record_problem(record):
    """What is wrong with the fields `read` and `restore` rely on in a checkpoint's record (a
    hand-edited or damaged file), or None."""
    tensors = record.get("tensors")
    if not isinstance(tensors, dict) or not isinstance(tensors.get("sha256"), str):
        return "no tensors file and sha256"
    name = tensors.get("file")
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        return f"tensors file {name!r} is not a file name beside it"
    step = record.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"step {step!r} is not a step number"
    if not isinstance(record.get("options"), dict) or not isinstance(record["options"].get("resume", {}), dict):
        return "no options"
    groups = record.get("optimizer_param_groups")
    if not isinstance(groups, list) or not all(isinstance(group, dict) for group in groups):
        return "no optimizer parameter groups"
    if record.get("scheduler") is not None and not isinstance(record["scheduler"], dict):
        return "a scheduler state that is not an object"
    rng = record.get("rng")
    if (not isinstance(rng, dict) or not isinstance(rng.get("numpy"), list) or len(rng["numpy"]) != 5
            or not isinstance(rng.get("python"), list) or len(rng["python"]) != 3):
        return "no random number generator states"
    return None


def model_state(tensors):
    return {key[len("model."):]: value for key, value in tensors.items() if key.startswith("model.")}


def restore(record, tensors, model, optimizer, scheduler=None, source=""):
    """Put the model, optimizer, scheduler and RNGs back as the checkpoint has them."""
    try:
        model.load_state_dict(model_state(tensors), strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{source}: its weights do not fit {record.get('task')} ({str(error).splitlines()[0]})") from None
    try:
        state = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, param, name = key.split(".", 2)
                state.setdefault(int(param), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": record["optimizer_param_groups"]})
        if scheduler is not None and record.get("scheduler") is not None:
            scheduler.load_state_dict(record["scheduler"])
        torch.set_rng_state(tensors["rng.torch"])
        cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
        if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        numpy_state = record["rng"]["numpy"]
        np.random.set_state((numpy_state[0], np.array(numpy_state[1], dtype=np.uint32), *numpy_state[2:]))
        python_state = record["rng"]["python"]
        random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as error:
        # (the record's fields have their shapes, record_problem; their contents may still not fit)
        words = str(error).splitlines()[0] if str(error) else repr(error)
        raise CheckpointError(f"{source}: its optimizer, scheduler or random states cannot be restored "
                              f"({type(error).__name__}: {words})") from None
