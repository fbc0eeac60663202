"""AMR-family zoo models written as plain ``nn.Module`` code (not specs).

Layer sizes follow the Keras models of the public AMR-Benchmark
(RML2016.10a, 128-sample frames, 11 classes), re-written here in PyTorch;
every model takes (N, 2, L) I/Q frames and returns logits (no softmax).
They go through the same module path as a user's own network (tracing,
identity replacement, Torch-Pruning). ``REFERENCE_PARAMS`` are parameter
counts of the Keras reference layer sizes at L=128, 11 classes, counted by
hand from those layers (CuDNN LSTM/GRU carry two bias vectors, like
PyTorch's); tests compare them with these modules.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import EdgepruneError

# Keras-style 'same' padding with even kernels (as the reference models use) makes torch warn on every call
warnings.filterwarnings("ignore", message="Using padding='same' with even kernel lengths")


class MCLDNN(nn.Module):
    """Multi-channel CNN + LSTM (Xu et al. 2020): an I/Q 2-D branch and separate I and Q 1-D branches."""

    def __init__(self, num_classes: int = 11, length: int = 128):
        super().__init__()
        self.conv_iq = nn.Conv2d(1, 50, (2, 8), padding="same")
        self.act_iq = nn.ReLU()
        self.conv_i = nn.Conv1d(1, 50, 8)
        self.act_i = nn.ReLU()
        self.conv_q = nn.Conv1d(1, 50, 8)
        self.act_q = nn.ReLU()
        self.conv2 = nn.Conv2d(50, 50, (1, 8), padding="same")
        self.act2 = nn.ReLU()
        self.conv4 = nn.Conv2d(100, 100, (2, 5))
        self.act4 = nn.ReLU()
        self.lstm1 = nn.LSTM(100, 128, batch_first=True)
        self.lstm2 = nn.LSTM(128, 128, batch_first=True)
        self.fc1 = nn.Linear(128, 128)
        self.act_fc1 = nn.SELU()
        self.drop1 = nn.Dropout(0.5)
        self.fc2 = nn.Linear(128, 128)
        self.act_fc2 = nn.SELU()
        self.drop2 = nn.Dropout(0.5)
        self.out = nn.Linear(128, num_classes)

    def forward(self, x):
        x1 = self.act_iq(self.conv_iq(x.unsqueeze(1)))                 # (N, 50, 2, L)
        i = self.act_i(self.conv_i(F.pad(x[:, :1], (7, 0))))            # causal
        q = self.act_q(self.conv_q(F.pad(x[:, 1:], (7, 0))))
        iq = self.act2(self.conv2(torch.stack([i, q], dim=2)))         # (N, 50, 2, L)
        z = self.act4(self.conv4(torch.cat([x1, iq], dim=1)))          # (N, 100, 1, L-4)
        z = z.squeeze(2).transpose(1, 2)                               # (N, L-4, 100)
        z, _ = self.lstm1(z)
        z, _ = self.lstm2(z)
        z = self.drop1(self.act_fc1(self.fc1(z[:, -1])))
        z = self.drop2(self.act_fc2(self.fc2(z)))
        return self.out(z)


class CLDNN(nn.Module):
    """CNN + LSTM (West & O'Shea 2017 style): three valid (1, 8) convs, the first and third joined in time,
    one LSTM over the channels, two dense layers."""

    def __init__(self, num_classes: int = 11, length: int = 128):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 50, (1, 8))
        self.act1 = nn.ReLU()
        self.drop1 = nn.Dropout(0.5)
        self.conv2 = nn.Conv2d(50, 50, (1, 8))
        self.act2 = nn.ReLU()
        self.drop2 = nn.Dropout(0.5)
        self.conv3 = nn.Conv2d(50, 50, (1, 8))
        self.act3 = nn.ReLU()
        self.drop3 = nn.Dropout(0.5)
        steps = 2 * ((length - 7) + (length - 21))
        self.lstm = nn.LSTM(steps, 50, batch_first=True)
        self.fc1 = nn.Linear(50, 256)
        self.act_fc1 = nn.ReLU()
        self.drop4 = nn.Dropout(0.5)
        self.out = nn.Linear(256, num_classes)

    def forward(self, x):
        a = self.drop1(self.act1(self.conv1(x.unsqueeze(1))))          # (N, 50, 2, L-7)
        b = self.drop2(self.act2(self.conv2(a)))
        c = self.drop3(self.act3(self.conv3(b)))                       # (N, 50, 2, L-21)
        z = torch.cat([a, c], dim=3).flatten(2)                        # (N, 50 steps, 2 x (2L-28))
        z, _ = self.lstm(z)
        return self.out(self.drop4(self.act_fc1(self.fc1(z[:, -1]))))


class PETCGDNN(nn.Module):
    """PET-CGDNN (Zhang et al. 2021): a dense layer estimates a phase, the frame is rotated by it, then
    two convs and a GRU."""

    def __init__(self, num_classes: int = 11, length: int = 128):
        super().__init__()
        self.phase = nn.Linear(2 * length, 1)
        self.conv1 = nn.Conv2d(1, 75, (8, 2))
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(75, 25, (5, 1))
        self.act2 = nn.ReLU()
        self.gru = nn.GRU(25, 128, batch_first=True)
        self.out = nn.Linear(128, num_classes)

    def forward(self, x):
        theta = self.phase(x.flatten(1))                               # (N, 1)
        c, s = torch.cos(theta), torch.sin(theta)
        i, q = x[:, 0], x[:, 1]
        y = torch.stack([i * c + q * s, q * c - i * s], dim=2)         # (N, L, 2)
        z = self.act2(self.conv2(self.act1(self.conv1(y.unsqueeze(1)))))  # (N, 25, L-11, 1)
        z = z.squeeze(3).transpose(1, 2)
        _, h = self.gru(z)
        return self.out(h[-1])


class LSTM2(nn.Module):
    """Two stacked LSTM layers of 128 over the (L, 2) sequence (Rajendran et al. 2018 style)."""

    def __init__(self, num_classes: int = 11, length: int = 128, hidden: int = 128):
        super().__init__()
        self.lstm = nn.LSTM(2, hidden, num_layers=2, batch_first=True)
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, x):
        z, _ = self.lstm(x.transpose(1, 2))
        return self.out(z[:, -1])


class ICAMCNet(nn.Module):
    """IC-AMCNet (Hermawan et al. 2020): four (1, k) convs with pooling and dropout, two dense layers."""

    def __init__(self, num_classes: int = 11, length: int = 128):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 64, (1, 8), padding="same"), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, (1, 4), padding="same"), nn.ReLU(),
            nn.Conv2d(64, 128, (1, 8), padding="same"), nn.ReLU(), nn.Dropout(0.4),
            nn.Conv2d(128, 128, (1, 8), padding="same"), nn.ReLU(), nn.Dropout(0.4),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(128 * (length // 2), 128), nn.ReLU(), nn.Dropout(0.4),
                                  nn.Linear(128, num_classes))

    def forward(self, x):
        return self.head(self.features(x.unsqueeze(1)))


AMR_ZOO = {
    "mcldnn": ("MCLDNN (AMR-Benchmark layer sizes): I/Q + I + Q conv branches, 2 LSTMs, 2 dense", MCLDNN),
    "cldnn": ("CLDNN (AMR-Benchmark layer sizes): 3 convs, LSTM 50, dense 256", CLDNN),
    "pet-cgdnn": ("PET-CGDNN (AMR-Benchmark layer sizes): phase estimation + rotation, 2 convs, GRU 128", PETCGDNN),
    "lstm2": ("2-layer LSTM of 128 (AMR-Benchmark LSTM2 layer sizes)", LSTM2),
    "ic-amcnet": ("IC-AMCNet (AMR-Benchmark layer sizes): 4 convs, dense 128", ICAMCNet),
}

# parameters of the Keras reference layer sizes at L=128, 11 classes (hand counts; see the module docstring)
REFERENCE_PARAMS = {
    "mcldnn": 850 + 2 * 450 + 20_050 + 100_100 + 4 * (128 * 228 + 256) + 4 * (128 * 256 + 256)
    + 2 * 16_512 + 1_419,
    "pet-cgdnn": 257 + 1_275 + 9_400 + 3 * (128 * 153 + 256) + 1_419,
    "lstm2": 4 * (128 * 130 + 256) + 4 * (128 * 256 + 256) + 1_419,
    "ic-amcnet": 576 + 16_448 + 65_664 + 131_200 + (8192 * 128 + 128) + 1_419,
}


def amr_names() -> list[str]:
    return list(AMR_ZOO)


def build_amr(name: str, num_classes: int = 11, length: int = 128) -> nn.Module:
    if name not in AMR_ZOO:
        raise EdgepruneError(f"unknown AMR-family model {name!r}; choose one of: {', '.join(AMR_ZOO)}")
    return AMR_ZOO[name][1](num_classes=int(num_classes), length=int(length))
