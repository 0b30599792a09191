"""A recorder of the ATen ops that run inside it, for tests that check which computation a code
path takes (not only what it returns)."""

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class RecordedOps(TorchDispatchMode):
    """`called`: (op name, shapes of its tensor arguments) for each op run inside the mode."""

    def __init__(self):
        super().__init__()
        self.called = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        shapes = tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))
        self.called.append((str(func), shapes))
        return func(*args, **(kwargs or {}))

    @property
    def names(self):
        return [name for name, _ in self.called]
