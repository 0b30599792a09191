"""Fixtures of the network tests."""

import pytest


@pytest.fixture
def two_threads():
    """Torch on 2 threads, as the goldens were made and as this project's machines have."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)
