"""Dassl's image transforms (docs/design/datasets.md §9): same order, same parameters, same printed lines."""
import torch
import torchvision.transforms as T
from torchvision.transforms import InterpolationMode

from ..utils.tools import UserError

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}
AVAILABLE_TRANSFORMS = (
    "random_flip", "random_resized_crop", "normalize", "instance_norm", "random_crop", "random_translation",
    "center_crop", "cutout", "gaussian_noise", "colorjitter", "randomgrayscale", "gaussian_blur",
)


class Random2DTranslation:
    """Resize to 1.125x then random crop back, with probability p (Dassl's random_translation)."""

    def __init__(self, height, width, p=0.5, interpolation=InterpolationMode.BILINEAR):
        self.height, self.width, self.p, self.interpolation = height, width, p, interpolation

    def __call__(self, img):
        if torch.rand(1).item() > self.p:
            return T.functional.resize(img, [self.height, self.width], self.interpolation)
        new_w, new_h = int(round(self.width * 1.125)), int(round(self.height * 1.125))
        resized = T.functional.resize(img, [new_h, new_w], self.interpolation)
        x0 = int(torch.randint(0, new_w - self.width + 1, (1,)).item())
        y0 = int(torch.randint(0, new_h - self.height + 1, (1,)).item())
        return T.functional.crop(resized, y0, x0, self.height, self.width)


class Cutout:
    def __init__(self, n_holes=1, length=16):
        self.n_holes, self.length = n_holes, length

    def __call__(self, img):
        h, w = img.shape[1:]
        mask = torch.ones(h, w)
        for _ in range(self.n_holes):
            y, x = int(torch.randint(h, (1,))), int(torch.randint(w, (1,)))
            mask[max(0, y - self.length // 2):y + self.length // 2, max(0, x - self.length // 2):x + self.length // 2] = 0
        return img * mask.unsqueeze(0)


class GaussianNoise:
    def __init__(self, mean=0.0, std=0.15, p=0.5):
        self.mean, self.std, self.p = mean, std, p

    def __call__(self, img):
        if torch.rand(1).item() > self.p:
            return img
        return img + torch.randn_like(img) * self.std + self.mean


class InstanceNormalization:
    def __call__(self, img):
        c = img.shape[0]
        flat = img.reshape(c, -1)
        return ((flat - flat.mean(1, keepdim=True)) / (flat.std(1, keepdim=True) + 1e-8)).reshape(img.shape)


def build_transform(cfg, is_train=True, choices=None):
    if cfg.INPUT.NO_TRANSFORM:
        print("Note: no transform is applied!")
        return None
    choices = list(choices if choices is not None else cfg.INPUT.TRANSFORMS)
    for choice in choices:
        if choice not in AVAILABLE_TRANSFORMS:
            raise UserError(f"unknown transform {choice!r} in INPUT.TRANSFORMS; available: {', '.join(AVAILABLE_TRANSFORMS)}")
    if cfg.INPUT.INTERPOLATION not in INTERPOLATION_MODES:
        raise UserError(f"INPUT.INTERPOLATION must be one of {', '.join(INTERPOLATION_MODES)}, "
                        f"got {cfg.INPUT.INTERPOLATION!r}")
    normalize = T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)
    build = _build_train if is_train else _build_test
    return build(cfg, choices, normalize)


def _build_train(cfg, choices, normalize):
    print("Building transform_train")
    interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    size = tuple(cfg.INPUT.SIZE)
    tfm = []
    if "random_crop" not in choices and "random_resized_crop" not in choices:
        print(f"+ resize to {size[0]}x{size[1]}")
        tfm.append(T.Resize(size, interpolation=interp))
    if "random_translation" in choices:
        print("+ random translation")
        tfm.append(Random2DTranslation(size[0], size[1], interpolation=interp))
    if "random_crop" in choices:
        pad = cfg.INPUT.CROP_PADDING
        print(f"+ random crop (padding = {pad})")
        tfm.append(T.RandomCrop(size, padding=pad))
    if "random_resized_crop" in choices:
        scale = cfg.INPUT.RRCROP_SCALE
        print(f"+ random resized crop (size={size}, scale={scale})")
        tfm.append(T.RandomResizedCrop(size, scale=scale, interpolation=interp))
    if "random_flip" in choices:
        print("+ random flip")
        tfm.append(T.RandomHorizontalFlip())
    if "colorjitter" in choices:
        i = cfg.INPUT
        print(f"+ color jitter (brightness={i.COLORJITTER_B}, contrast={i.COLORJITTER_C}, "
              f"saturation={i.COLORJITTER_S}, hue={i.COLORJITTER_H})")
        tfm.append(T.ColorJitter(i.COLORJITTER_B, i.COLORJITTER_C, i.COLORJITTER_S, i.COLORJITTER_H))
    if "randomgrayscale" in choices:
        print(f"+ random gray scale (p={cfg.INPUT.RGS_P})")
        tfm.append(T.RandomGrayscale(p=cfg.INPUT.RGS_P))
    if "gaussian_blur" in choices:
        print(f"+ gaussian blur (kernel={cfg.INPUT.GB_K})")
        tfm.append(T.RandomApply([T.GaussianBlur(cfg.INPUT.GB_K)], p=cfg.INPUT.GB_P))
    print("+ to torch tensor of range [0, 1]")
    tfm.append(T.ToTensor())
    if "cutout" in choices:
        print(f"+ cutout (n_holes={cfg.INPUT.CUTOUT_N}, length={cfg.INPUT.CUTOUT_LEN})")
        tfm.append(Cutout(cfg.INPUT.CUTOUT_N, cfg.INPUT.CUTOUT_LEN))
    if "normalize" in choices:
        print(f"+ normalization (mean={cfg.INPUT.PIXEL_MEAN}, std={cfg.INPUT.PIXEL_STD})")
        tfm.append(normalize)
    if "gaussian_noise" in choices:
        print(f"+ gaussian noise (mean={cfg.INPUT.GN_MEAN}, std={cfg.INPUT.GN_STD})")
        tfm.append(GaussianNoise(cfg.INPUT.GN_MEAN, cfg.INPUT.GN_STD))
    if "instance_norm" in choices:
        print("+ instance normalization")
        tfm.append(InstanceNormalization())
    return T.Compose(tfm)


def _build_test(cfg, choices, normalize):
    print("Building transform_test")
    interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    size = tuple(cfg.INPUT.SIZE)
    print(f"+ resize the smaller edge to {max(size)}")
    print(f"+ {size[0]}x{size[1]} center crop")
    print("+ to torch tensor of range [0, 1]")
    tfm = [T.Resize(max(size), interpolation=interp), T.CenterCrop(size), T.ToTensor()]
    if "normalize" in choices:
        print(f"+ normalization (mean={cfg.INPUT.PIXEL_MEAN}, std={cfg.INPUT.PIXEL_STD})")
        tfm.append(normalize)
    if "instance_norm" in choices:
        print("+ instance normalization")
        tfm.append(InstanceNormalization())
    return T.Compose(tfm)
