"""Three networks written the way AMR repositories write them (test-only user code).

Each takes (N, 2, L) I/Q frames and returns (N, num_classes) logits.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class ResBlock1d(nn.Module):
    """The user's own residual block class."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm1d(cout)
        self.conv2 = nn.Conv1d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm1d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv1d(cin, cout, 1, stride, bias=False), nn.BatchNorm1d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.short is None else self.short(x)))


class ResNet1d(nn.Module):
    """stem conv, two stages of residual blocks (the second strided), global pool, classifier."""

    def __init__(self, num_classes=4, width=8, blocks=3):
        super().__init__()
        self.stem = nn.Conv1d(2, width, 7, padding=3, bias=False)
        self.bn = nn.BatchNorm1d(width)
        layers = [ResBlock1d(width, width) for _ in range(blocks)]
        layers += [ResBlock1d(width, 2 * width, stride=2)] + [ResBlock1d(2 * width, 2 * width) for _ in range(blocks - 1)]
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = self.layers(x)
        return self.fc(x.mean(-1))


def vgg_like(num_classes=4, length=32):
    """A plain nn.Sequential of Conv1d-BN-ReLU (a factory function, as many repos write it)."""
    return nn.Sequential(
        nn.Conv1d(2, 8, 3, padding=1), nn.BatchNorm1d(8), nn.ReLU(),
        nn.Conv1d(8, 8, 3, padding=1), nn.BatchNorm1d(8), nn.ReLU(),
        nn.Conv1d(8, 8, 3, padding=1), nn.BatchNorm1d(8), nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Conv1d(8, 16, 3, padding=1), nn.BatchNorm1d(16), nn.ReLU(),
        nn.Conv1d(16, 16, 3, padding=1), nn.BatchNorm1d(16), nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Flatten(),
        nn.Linear(16 * (length // 4), 32), nn.ReLU(),
        nn.Linear(32, num_classes),
    )


class CLDNNLike(nn.Module):
    """CNN + stacked LSTM (CLDNN style): conv front end, 2-layer LSTM, last step to the classifier."""

    def __init__(self, num_classes=4, hidden=16):
        super().__init__()
        self.conv1 = nn.Conv1d(2, hidden, 5, padding=2)
        self.conv2 = nn.Conv1d(hidden, hidden, 5, padding=2)
        self.drop = nn.Dropout(0.1)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=2, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = self.drop(F.relu(self.conv2(x)))
        y, _ = self.lstm(x.transpose(1, 2))
        return self.fc(y[:, -1])


class NotAModel:
    pass


def not_a_factory():
    return 3


class PadBlock2d(nn.Module):
    """A 2-D residual block whose shortcut zero-pads channels (option A of the CIFAR ResNets, as the PSR ResNet56)."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, (1, 3), (1, stride), (0, 1), bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, (1, 3), 1, (0, 1), bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride = stride

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        short = x[:, :, :, ::self.stride]
        extra = out.size(1) - x.size(1)
        if extra:
            short = F.pad(short, (0, 0, 0, 0, extra // 2, extra - extra // 2))
        return F.relu(out + short)


class ZeroPadResNet2d(nn.Module):
    """Takes (N, 1, 2, L): a (2, k) stem folds I and Q, then zero-pad residual stages."""

    def __init__(self, num_classes=4, width=4):
        super().__init__()
        self.stem = nn.Conv2d(1, width, (2, 3), padding=(0, 1), bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.layer1 = nn.Sequential(PadBlock2d(width, width), PadBlock2d(width, width))
        self.layer2 = nn.Sequential(PadBlock2d(width, 2 * width, 2), PadBlock2d(2 * width, 2 * width))
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(x.mean((2, 3)))


class SeqLSTM(nn.Module):
    """Takes (N, L, 2) (time first, I/Q as features), as LSTM AMR models do: 2-layer LSTM, last step."""

    def __init__(self, num_classes=4, hidden=16):
        super().__init__()
        self.lstm = nn.LSTM(2, hidden, num_layers=2, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y[:, -1])


class Chatty(nn.Module):
    """Prints when built and on every forward (as research code does)."""

    def __init__(self, num_classes=4):
        super().__init__()
        print("building Chatty")
        self.conv1 = nn.Conv1d(2, 8, 3, padding=1)
        self.conv2 = nn.Conv1d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        print("forward", tuple(x.shape))
        return self.fc(F.relu(self.conv2(F.relu(self.conv1(x)))).mean(-1))


class ConvTransformer(nn.Module):
    """Conv front end and a standard nn.TransformerEncoder over time, mean-pooled."""

    def __init__(self, num_classes=4, d_model=16, layers=2):
        super().__init__()
        self.conv = nn.Conv1d(2, d_model, 3, padding=1)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(d_model, 2, 32, batch_first=True), layers)
        self.fc = nn.Linear(d_model, num_classes)

    def forward(self, x):
        return self.fc(self.encoder(F.relu(self.conv(x)).transpose(1, 2)).mean(1))


class BatchConstant(nn.Module):
    """A shortcut that builds its zero padding from int(x.size(0)): traced by torch.onnx as a constant batch."""

    def __init__(self, num_classes=4):
        super().__init__()
        self.conv = nn.Conv1d(2, 8, 3, padding=1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        y = F.relu(self.conv(x))
        pad = torch.zeros(int(x.size(0)), 8, y.size(2))
        return self.fc(torch.cat([y, pad], 1).mean(-1))


def flat_mlp(num_classes=4, length=64):
    """Flattens the frame first, so it runs on any layout of the same number of samples."""
    return nn.Sequential(nn.Flatten(), nn.Linear(2 * length, 16), nn.ReLU(), nn.Linear(16, num_classes))


class SpectrumNet(nn.Module):
    """Works on the frame's spectrum (torch.fft), which the TorchScript ONNX exporter cannot export."""

    def __init__(self, num_classes=4):
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        z = torch.fft.fft(x)
        return self.fc(F.relu(self.conv(torch.cat([z.real, z.imag], 1))).mean(-1))
