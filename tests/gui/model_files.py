"""The model file of the tests' Linear(4, 8) runs (conftest.write_run's folders and
test_progressive_open.bare_folder): a user's file building the model and its data
(docs/surface.md), with a sleep where a test needs a slow model."""


def linear_model_file(forward_sleep: float = 0.0, batches_sleep: float = 0.0) -> str:
    """The file's text; ``forward_sleep``/``batches_sleep``: seconds every forward pass /
    every call of ``batches()`` takes on top of its work."""
    return f'''
import time

import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 8)

    def forward(self, x):
        time.sleep({forward_sleep!r})
        return self.fc(x)

def build_model():
    return Net()

def batches():
    time.sleep({batches_sleep!r})
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    yield x, 2.0 * x.repeat(1, 2)

def loss_fn(out, y):
    return ((out - y) ** 2).mean()
'''
