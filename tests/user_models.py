"""Three networks written the way AMR repositories write them (test-only user code).

Each takes (N, 2, L) I/Q frames and returns (N, num_classes) logits.
"""

import math

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


class LayoutPadBlock2d(nn.Module):
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
        self.layer1 = nn.Sequential(LayoutPadBlock2d(width, width), LayoutPadBlock2d(width, width))
        self.layer2 = nn.Sequential(LayoutPadBlock2d(width, 2 * width, 2), LayoutPadBlock2d(2 * width, 2 * width))
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


class LayoutConvTransformer(nn.Module):
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
    """Works on the frame's spectrum (torch.fft), which the TorchScript ONNX exporter cannot export (torch's dynamo
    exporter can: a real input's FFT and its real and imaginary parts)."""

    def __init__(self, num_classes=4):
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        z = torch.fft.fft(x)
        return self.fc(F.relu(self.conv(torch.cat([z.real, z.imag], 1))).mean(-1))


class ComplexGainNet(nn.Module):
    """Scales the spectrum's real and imaginary parts and goes back with the inverse FFT (AMC-Net's adaptive
    correlation): ``1j * tensor`` is a complex tensor, which neither torch ONNX exporter translates."""

    def __init__(self, num_classes=4, length=64):
        super().__init__()
        self.re = nn.Linear(length, length)
        self.im = nn.Linear(length, length)
        self.conv = nn.Conv1d(2, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        z = torch.fft.fft(x)
        z = self.re(z.real) * z.real + 1j * (self.im(z.imag) * z.imag)
        y = torch.real(torch.fft.ifft(z)) + x
        return self.fc(F.relu(self.conv(y)).mean(-1))


# ------------------------------------------------------------------ channel-pruning suite (issue 24)
# Tiny networks of the shapes published AMR repositories use, written for these tests. Each takes (N, 2, L).


class PadBlock2d(nn.Module):
    """A CIFAR-style basic block on (N, C, 2, L) maps; a downsampling block's shortcut is parameter-free: it halves
    the length and zero-pads the channels on both sides, the padding computed at run time from the widths
    (``x.size(1)`` and the residual branch's), so it fits whatever widths the block has."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, (1, stride), 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = stride != 1 or cin != cout

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.down:
            diff = out.size(1) - x.size(1)
            x = F.pad(x[:, :, :, ::2], (0, 0, 0, 0, diff // 2, diff - diff // 2))
        return F.relu(out + x)


class PadResNet2d(nn.Module):
    """ResNet-56's layout in miniature on 2-D (I/Q x time) maps: stem, three stages, the later two entered through
    a zero-padding shortcut whose padding follows the incoming width."""

    def __init__(self, num_classes=4, width=4, blocks=2):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        layers, cin = [], width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for b in range(blocks):
                layers.append(PadBlock2d(cin, cout, 2 if (stage and not b) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x.unsqueeze(1))))
        x = self.layers(x)
        return self.fc(x.mean((2, 3)))


class PadResNet1d(nn.Module):
    """The same in 1-D (a Conv1d ResNet with the x.size(1) zero-padding shortcut)."""

    def __init__(self, num_classes=4, width=4):
        super().__init__()
        self.stem = nn.Conv1d(2, width, 3, padding=1, bias=False)
        self.c1 = nn.Conv1d(width, width, 3, padding=1, bias=False)
        self.c2 = nn.Conv1d(width, 2 * width, 3, 2, 1, bias=False)
        self.c3 = nn.Conv1d(2 * width, 2 * width, 3, padding=1, bias=False)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(x + self.c1(x))
        half = x.size(1) // 2
        x = F.relu(self.c3(F.relu(self.c2(x))) + F.pad(x[:, :, ::2], (0, 0, half, half)))
        return self.fc(x.mean(-1))


class BranchLSTM(nn.Module):
    """A recurrent stage in its own module (as dual-branch CNN+LSTM models write it)."""

    def __init__(self, cin, hidden):
        super().__init__()
        self.lstm1 = nn.LSTM(cin, hidden, batch_first=True)
        self.lstm2 = nn.LSTM(hidden, hidden, batch_first=True)

    def forward(self, x):
        y, _ = self.lstm1(x)
        y, _ = self.lstm2(y)
        return y[:, -1]


class DualBranchCLDNN(nn.Module):
    """MCLDNN style: a 2-D conv on the I/Q plane and 1-D convs on I and Q, concatenated, then a nested LSTM stage
    and a dense head."""

    def __init__(self, num_classes=4, ch=8, hidden=12):
        super().__init__()
        self.conv2d = nn.Conv2d(1, ch, (2, 5), padding=(0, 2))
        self.conv_i = nn.Conv1d(1, ch, 5, padding=2)
        self.conv_q = nn.Conv1d(1, ch, 5, padding=2)
        self.merge = nn.Conv1d(3 * ch, 2 * ch, 3, padding=1)
        self.rnn = BranchLSTM(2 * ch, hidden)
        self.fc1 = nn.Linear(hidden, 16)
        self.fc2 = nn.Linear(16, num_classes)

    def forward(self, x):
        a = F.relu(self.conv2d(x.unsqueeze(1))).squeeze(2)
        i = F.relu(self.conv_i(x[:, :1]))
        q = F.relu(self.conv_q(x[:, 1:]))
        y = F.relu(self.merge(torch.cat([a, i, q], 1)))
        return self.fc2(F.relu(self.fc1(self.rnn(y.transpose(1, 2)))))


class ConvTransformer(nn.Module):
    """A conv front end, a standard nn.TransformerEncoder over time, mean over time, classifier (the feed-forward
    width 8 x d_model: most of the MACs in the feed-forward layers, as with PyTorch's default 2048)."""

    def __init__(self, num_classes=4, d_model=16, layers=2):
        super().__init__()
        self.conv = nn.Conv1d(2, 8, 5, padding=2)
        self.proj = nn.Conv1d(8, d_model, 1)
        layer = nn.TransformerEncoderLayer(d_model, 2, dim_feedforward=8 * d_model, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.fc = nn.Linear(d_model, num_classes)

    def forward(self, x):
        y = self.proj(F.relu(self.conv(x))).transpose(1, 2)
        return self.fc(self.encoder(y).mean(1))


class PhaseGRU(nn.Module):
    """PET-CGDNN style: a Linear estimates a phase from the whole frame, the I/Q samples are rotated by it, then
    convs and a GRU."""

    def __init__(self, num_classes=4, length=64, ch=8, hidden=12):
        super().__init__()
        self.phase = nn.Linear(2 * length, 1)
        self.conv1 = nn.Conv1d(2, ch, 5, padding=2)
        self.conv2 = nn.Conv1d(ch, ch, 3, padding=1)
        self.gru = nn.GRU(ch, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):
        p = self.phase(x.flatten(1))
        c, s = torch.cos(p), torch.sin(p)
        i, q = x[:, 0], x[:, 1]
        x = torch.stack([i * c + q * s, q * c - i * s], 1)
        y = F.relu(self.conv2(F.relu(self.conv1(x))))
        h, _ = self.gru(y.transpose(1, 2))
        return self.fc(h[:, -1])


# ---------------------------------------------------------------- shapes of published AMR networks (issue 24)


class TransformerAMR(nn.Module):
    """conv embedding, a standard nn.TransformerEncoder (3 layers), mean over time, classifier."""

    def __init__(self, num_classes=4, d=8, layers=3):
        super().__init__()
        self.embed = nn.Conv1d(2, d, 1)
        layer = nn.TransformerEncoderLayer(d, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.fc = nn.Linear(d, num_classes)

    def forward(self, x):
        y = self.encoder(self.embed(x).transpose(1, 2))
        return self.fc(y.mean(1))


class Recurrent(nn.Module):
    """The user's own module around an LSTM: it returns the last step (so it changes the shape)."""

    def __init__(self, hidden):
        super().__init__()
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)

    def forward(self, x):
        y, _ = self.lstm(x)
        return y[:, -1]


class NestedLSTM(nn.Module):
    """CNN + LSTM whose second LSTM sits inside a module of its own (MCLDNN style)."""

    def __init__(self, num_classes=4, hidden=8):
        super().__init__()
        self.conv = nn.Conv1d(2, hidden, 3, padding=1)
        self.lstm1 = nn.LSTM(hidden, hidden, batch_first=True)
        self.rec = Recurrent(hidden)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):
        y, _ = self.lstm1(F.relu(self.conv(x)).transpose(1, 2))
        return self.fc(self.rec(y))


class SE(nn.Module):
    """Squeeze-and-excitation: only Linear layers, shape-preserving."""

    def __init__(self, c, r=2):
        super().__init__()
        self.fc1 = nn.Linear(c, c // r)
        self.fc2 = nn.Linear(c // r, c)

    def forward(self, x):
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(-1)))))
        return x * w.unsqueeze(-1)


class SelfAttention(nn.Module):
    """A residual self-attention block over time (batch-first multi-head attention)."""

    def __init__(self, c):
        super().__init__()
        self.att = nn.MultiheadAttention(c, 2, batch_first=True)

    def forward(self, x):
        t = x.transpose(1, 2)
        return x + self.att(t, t, t, need_weights=False)[0].transpose(1, 2)


class MLPBlock(nn.Module):
    """A residual per-time-step MLP (Linear-ReLU-Linear)."""

    def __init__(self, c):
        super().__init__()
        self.fc1 = nn.Linear(c, 2 * c)
        self.fc2 = nn.Linear(2 * c, c)

    def forward(self, x):
        t = x.transpose(1, 2)
        return x + self.fc2(F.relu(self.fc1(t))).transpose(1, 2)


class AttentionSE(nn.Module):
    """stem conv, SE, attention and MLP blocks (all shape-preserving, all dense), an MLP head, classifier."""

    def __init__(self, num_classes=4, c=8):
        super().__init__()
        self.stem = nn.Conv1d(2, c, 3, padding=1)
        self.se = SE(c)
        self.att = SelfAttention(c)
        self.mlp = MLPBlock(c)
        self.head = nn.Sequential(nn.Linear(c, c), nn.ReLU())
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.mlp(self.att(self.se(F.relu(self.stem(x)))))
        return self.fc(self.head(x.mean(-1)))


class PoolStack(nn.Module):
    """A residual stack written flat (PSR's CNN1D style): 1x1 conv, two residual convs, max-pool (halves L)."""

    def __init__(self, cin, c):
        super().__init__()
        self.proj = nn.Conv1d(cin, c, 1)
        self.a = nn.Conv1d(c, c, 3, padding=1)
        self.b = nn.Conv1d(c, c, 3, padding=1)

    def forward(self, x):
        x = self.proj(x)
        x = F.relu(x + self.b(F.relu(self.a(x))))
        return F.max_pool1d(x, 2)


class PoolStackNet(nn.Module):
    """Stacks that pool, flattened into a dense head (the length reaching the head matters)."""

    def __init__(self, num_classes=4, c=4, stacks=3, length=64):
        super().__init__()
        self.stacks = nn.Sequential(*[PoolStack(2 if i == 0 else c, c) for i in range(stacks)])
        self.fc = nn.Linear(c * (length >> stacks), num_classes)

    def forward(self, x):
        return self.fc(self.stacks(x).flatten(1))


class PhaseGRUNet(nn.Module):
    """PET-CGDNN style: a Linear estimates a phase from the whole frame, the I/Q are rotated by it, then conv and
    a 2-layer GRU."""

    def __init__(self, num_classes=4, length=64, hidden=8):
        super().__init__()
        self.phase = nn.Linear(2 * length, 1)
        self.conv = nn.Conv1d(2, hidden, 3, padding=1)
        self.gru = nn.GRU(hidden, hidden, num_layers=2, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):
        p = self.phase(x.flatten(1))
        c, s = torch.cos(p), torch.sin(p)
        x = torch.stack([x[:, 0] * c - x[:, 1] * s, x[:, 0] * s + x[:, 1] * c], 1)
        y, _ = self.gru(F.relu(self.conv(x)).transpose(1, 2))
        return self.fc(y[:, -1])


class PhaseRotationGRUFlat(nn.Module):
    """PET-CGDNN as the AMR-benchmark repository writes it: the phase Linear reads the flattened (N, 1, 2, L) frame,
    the rotation is four (N, 1, 1) @ (N, 1, L) matmuls, 2-D convs fold I and Q, a GRU, and a dense head on the
    flattened GRU output of every time step (Torch-Pruning 1.6 divides by zero mapping the matmul's reshape)."""

    def __init__(self, num_classes=4, length=64, ch=16, hidden=8, dense=32):
        super().__init__()
        self.fc1 = nn.Linear(2 * length, 1)
        self.conv1 = nn.Sequential(nn.Conv2d(1, ch, (2, 5)), nn.ReLU(), nn.BatchNorm2d(ch))
        self.conv2 = nn.Sequential(nn.Conv2d(ch, ch // 2, (1, 3)), nn.ReLU(), nn.BatchNorm2d(ch // 2))
        self.gru = nn.GRU(ch // 2, hidden, batch_first=True)
        self.fc2 = nn.Sequential(nn.Linear((length - 6) * hidden, dense), nn.ReLU(), nn.Linear(dense, num_classes))

    def forward(self, x):
        y = x.unsqueeze(1)
        i, q = y[:, :, 0, :], y[:, :, 1, :]
        p = self.fc1(y.view(y.size(0), -1))
        c, s = torch.cos(p).unsqueeze(1), torch.sin(p).unsqueeze(1)
        z = torch.cat((torch.matmul(c, i) + torch.matmul(s, q), torch.matmul(c, q) - torch.matmul(s, i)), dim=1)
        z = self.conv2(self.conv1(z.unsqueeze(1))).squeeze(2).transpose(1, 2)
        h, _ = self.gru(z)
        return self.fc2(h.contiguous().view(h.size(0), -1))


class FusionAttentionNet(nn.Module):
    """AMC-Net's shape: conv stages, then a self-attention over the channels (each channel a token; the key, query
    and value Linears act on the time axis, split into heads by a fixed head size), global average pooling and a
    dense head."""

    def __init__(self, num_classes=4, length=64, heads=2, widths=(32, 64, 8)):
        super().__init__()
        chans = (2,) + tuple(widths)
        self.convs = nn.Sequential(*[nn.Sequential(nn.Conv1d(a, b, 3, padding=1), nn.ReLU(), nn.BatchNorm1d(b))
                                     for a, b in zip(chans, chans[1:])])
        self.heads, self.head_size = heads, length // heads
        self.key, self.query, self.value = (nn.Linear(length, length) for _ in range(3))
        self.fc = nn.Sequential(nn.Linear(heads * widths[-1], 32), nn.PReLU(), nn.Linear(32, num_classes))

    def _split(self, t):
        return t.view(t.size()[:-1] + (self.heads, self.head_size)).permute(0, 2, 1, 3)

    def forward(self, x):
        y = self.convs(x)
        k, q, v = self._split(self.key(y)), self._split(self.query(y)), self._split(self.value(y))
        a = F.softmax(torch.matmul(q, k.permute(0, 1, 3, 2)) / math.sqrt(self.head_size), dim=-1)
        ctx = torch.matmul(a, v)
        ctx = ctx.contiguous().view(ctx.size(0), -1, ctx.size(-1))
        return self.fc(ctx.mean(-1))


class SqueezeConv(nn.Module):
    """A Conv2d across the I and Q rows, then an axis-less ``squeeze()`` (PET-CGDNN style): at one frame it also
    drops the batch axis, so the network runs on 2+ frames but not on one; each frame is computed on its own."""

    def __init__(self, num_classes=4, width=8):
        super().__init__()
        self.conv = nn.Conv2d(1, width, kernel_size=(2, 5))
        self.body = nn.Sequential(nn.Conv1d(width, width, 3, padding=1), nn.ReLU())   # shape-preserving
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        x = torch.relu(self.conv(x.unsqueeze(1)))   # (N, width, 1, L - 4)
        x = x.squeeze()                             # (N, width, L - 4); (width, L - 4) at N = 1
        return self.head(self.body(x).mean(-1))


class SqueezeGRU(nn.Module):
    """Conv2d, axis-less ``torch.squeeze``, then a batch-first GRU whose last step is classified."""

    def __init__(self, num_classes=4, hidden=8):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, kernel_size=(2, 3))
        self.gru = nn.GRU(6, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):
        x = torch.squeeze(torch.relu(self.conv(x.unsqueeze(1))))   # (N, 6, L - 2)
        x, _ = self.gru(x.transpose(1, 2))
        return self.fc(x[:, -1, :])


class SqueezeInPlace(nn.Module):
    """An in-place ``squeeze_()`` (which export does not rewrite): its ONNX graph, like the network, needs 2 frames."""

    def __init__(self, num_classes=4, width=6, length=64):
        super().__init__()
        self.conv = nn.Conv2d(1, width, kernel_size=(2, 5))
        self.head = nn.Linear(width * (length - 4), num_classes)

    def forward(self, x):
        x = torch.relu(self.conv(x.unsqueeze(1)))
        x.squeeze_()                                # (N, width, L - 4); (width, L - 4) at N = 1
        return self.head(x.flatten(1))


class BatchCentred(nn.Module):
    """Subtracts the batch mean (frames are not independent) and squeezes without an axis: not runnable on one
    frame, and padding would change its logits."""

    def __init__(self, num_classes=4, width=4):
        super().__init__()
        self.conv = nn.Conv2d(1, width, kernel_size=(2, 5))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        x = x - x.mean(0, keepdim=True)
        x = self.conv(x.unsqueeze(1)).squeeze()
        return self.head(x.mean(-1))


class SharedActivation(nn.Module):
    """One activation module used twice per forward (after the stem conv and after the first head Linear), as
    MCformer uses its ``nn.SELU``; two shape-preserving conv blocks between."""

    def __init__(self, num_classes=4, width=8):
        super().__init__()
        self.stem = nn.Conv1d(2, width, 3, padding=1)
        self.act = nn.SELU()
        self.blocks = nn.Sequential(*[nn.Sequential(nn.Conv1d(width, width, 3, padding=1), nn.ReLU())
                                      for _ in range(2)])
        self.fc1 = nn.Linear(width, 16)
        self.fc2 = nn.Linear(16, num_classes)

    def forward(self, x):
        x = self.blocks(self.act(self.stem(x)))
        return self.fc2(self.act(self.fc1(x.mean(-1))))


def kernel_ladder(num_classes=4, kernels=(1, 3, 5, 7, 9), width=8):
    """Conv1d-BN-ReLU units of one width and kernel sizes ``kernels`` (so their MACs differ: width^2 x k x L
    each), after a stem conv; global average pool and a classifier."""
    layers = [nn.Conv1d(2, width, 3, padding=1), nn.BatchNorm1d(width), nn.ReLU()]
    for k in kernels:
        layers += [nn.Conv1d(width, width, k, padding=k // 2), nn.BatchNorm1d(width), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(width, num_classes))
