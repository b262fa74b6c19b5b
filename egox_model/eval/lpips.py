"""LPIPS (Zhang et al. 2018, v0.1) in plain torch: AlexNet or VGG16 features + learned
linear layers, loaded from local files only (torchvision does not import beside this torch).

The network is the standard one, so the standard weights load unchanged:

- backbone: torchvision's ImageNet state dict (`alexnet-owt-7be5be79.pth` or
  `vgg16-397923af.pth`; keys `features.N.weight|bias`, `classifier.*` ignored);
- linear layers: the `lpips` package's `weights/v0.1/alex.pth` or `vgg.pth` (keys
  `linL.model.1.weight`, one 1x1 convolution without bias per feature layer).

distance = sum over layers L of mean over pixels of w_L . (n(f_L(x)) - n(f_L(y)))^2, with
n() the unit-norm over channels and inputs scaled from [-1, 1] by the fixed ImageNet shift
and scale. Frames are compared at their own size (the reference does not resize).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from egox_model.errors import InputError, ModelLoadError

__all__ = ["LPIPS", "LPIPS_NETS", "load_lpips"]


def _vgg16_layers() -> list[tuple]:
    layers: list[tuple] = []
    cin = 3
    for cout, repeat in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
        if layers:
            layers.append(("pool", 2))
        for _ in range(repeat):
            layers += [("conv", cin, cout, 3, 1, 1), ("relu",)]
            cin = cout
    return layers


#: net -> (backbone layers: ("conv", in, out, kernel, stride, padding), ("relu",) or
#: ("pool", kernel) with stride 2; the layer index ending each of the 5 compared slices;
#: torchvision's backbone file (glob, example); the lpips package's linear-layer file).
LPIPS_NETS = {
    "alex": ([("conv", 3, 64, 11, 4, 2), ("relu",), ("pool", 3), ("conv", 64, 192, 5, 1, 2),
              ("relu",), ("pool", 3), ("conv", 192, 384, 3, 1, 1), ("relu",),
              ("conv", 384, 256, 3, 1, 1), ("relu",), ("conv", 256, 256, 3, 1, 1), ("relu",)],
             (2, 5, 8, 10, 12), ("alexnet*.pth", "alexnet-owt-7be5be79.pth"), "alex.pth"),
    "vgg": (_vgg16_layers(), (4, 9, 16, 23, 30), ("vgg16*.pth", "vgg16-397923af.pth"),
            "vgg.pth"),
}
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


def _layer(spec: tuple) -> nn.Module:
    if spec[0] == "conv":
        _, cin, cout, k, stride, pad = spec
        return nn.Conv2d(cin, cout, k, stride=stride, padding=pad)
    if spec[0] == "relu":
        return nn.ReLU()
    return nn.MaxPool2d(kernel_size=spec[1], stride=2)


class _Linear(nn.Module):
    """lpips' NetLinLayer: dropout (inactive at eval) + 1x1 conv to one channel, no bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class LPIPS(nn.Module):
    """LPIPS distance of `net` ("alex" or "vgg"); random weights until loaded."""

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        if net not in LPIPS_NETS:
            raise InputError(f"LPIPS net {net!r} is not one of {sorted(LPIPS_NETS)}")
        specs, self.slice_ends, _, _ = LPIPS_NETS[net]
        self.net = net
        self.features = nn.Sequential(*[_layer(s) for s in specs])
        channels = [m.out_channels for m in self.features if isinstance(m, nn.Conv2d)]
        outs = [channels[sum(isinstance(m, nn.Conv2d) for m in self.features[:end]) - 1]
                for end in self.slice_ends]
        self.lins = nn.ModuleList(_Linear(c) for c in outs)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distances (N,) of images x, y (N, 3, H, W) float in [-1, 1]."""
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        fx, fy = (x - self.shift) / self.scale, (y - self.shift) / self.scale
        start = 0
        for end, lin in zip(self.slice_ends, self.lins):
            for layer in self.features[start:end]:
                fx, fy = layer(fx), layer(fy)
            start = end
            nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin.model((nx - ny) ** 2).mean((1, 2, 3))
        return total

    @torch.no_grad()
    def video_distance(self, prediction: np.ndarray, target: np.ndarray,
                       batch: int = 8) -> float:
        """Mean LPIPS over the frames of two (F, H, W, 3) uint8 videos."""
        if prediction.shape != target.shape:
            raise InputError(f"prediction shape {prediction.shape} != target shape "
                             f"{target.shape}")
        device = self.shift.device

        def tensor(frames: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
            return t.permute(0, 3, 1, 2).float() / 127.5 - 1.0

        values = [self(tensor(prediction[i:i + batch]), tensor(target[i:i + batch]))
                  for i in range(0, len(prediction), batch)]
        return float(torch.cat(values).mean())


def _state_dict(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:                    # a corrupt or foreign file: say which
        raise ModelLoadError(f"cannot read {path} as a torch state dict: {err}") from err


def load_lpips(model_dir: str | Path, net: str = "alex", device: str = "cpu") -> LPIPS:
    """LPIPS of `net` with the backbone and linear-layer files found in `model_dir`
    (module docstring); a missing or mismatched file raises ModelLoadError naming it."""
    if net not in LPIPS_NETS:
        raise InputError(f"LPIPS net {net!r} is not one of {sorted(LPIPS_NETS)}")
    _, _, (backbone_glob, backbone_example), lin_name = LPIPS_NETS[net]
    model_dir = Path(model_dir)
    backbones = sorted(model_dir.glob(backbone_glob)) if model_dir.is_dir() else []
    lin_path = model_dir / lin_name
    missing = [name for name, found in ((backbone_glob, backbones),
                                        (lin_name, lin_path.is_file())) if not found]
    if missing:
        raise ModelLoadError(
            f"LPIPS ({net}) needs in {model_dir}: torchvision's ImageNet weights "
            f"({backbone_example}) and the lpips package's linear layers "
            f"(lpips/weights/v0.1/{lin_name}); missing: {', '.join(missing)}")
    model = LPIPS(net)
    backbone = {k[len("features."):]: v for k, v in _state_dict(backbones[0]).items()
                if k.startswith("features.")}
    lins = {k: v for k, v in _state_dict(lin_path).items() if k.startswith("lin")}
    lins = {f"{k[3]}.{k[5:]}": v for k, v in lins.items()}
    for module, state, path in ((model.features, backbone, backbones[0]),
                                (model.lins, lins, lin_path)):
        try:
            module.load_state_dict(state)
        except RuntimeError as err:
            raise ModelLoadError(f"{path} does not fit LPIPS ({net}): {err}") from err
    return model.to(device).eval()
