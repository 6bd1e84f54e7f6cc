"""The PyTorch peer of `resnest.train` for benchmarks/train_accuracy.py: same model, same recipe.

Runs ONLY in the reference venv (`.venv-ref/bin/python`: torch + the official `resnest`
package, whose top-level module shadows this project's). It reads the images as .npy arrays
(the benchmark decodes the PNG folders once, so both trainers see the same pixels) and a JSON
recipe, trains, evaluates, and prints one JSON line {"top1": ..., "final_lr": ...}.

The recipe is ours, step by step, so that any gap is the framework's and not the recipe's:
- model: the official ResNet class with timm's resnest14d hyperparameters; `last_gamma`
  zero-initialises each block's last BN gamma *after* the official init loop (the official
  constructor zeroes it and then its init loop refills every BN weight with 1, so passing
  last_gamma=True alone does nothing there);
- loss: the seed's label smoothing (true class 1 - s, every other s / (K - 1)), not torch's
  built-in form (every class s / K);
- optimizer: SGD momentum, weight decay on conv/fc weights only when disable_bn_wd;
- lr: the per-step array our `resnest.lr_schedule` builds, passed in by the benchmark;
- augmentation: random-resized crop (scale range, ratio 3/4-4/3, bilinear) and optional
  horizontal flip, ImageNet mean/std; eval resizes the short side then centre-crops.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F
from resnest.torch.resnet import Bottleneck, ResNet

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def resnest14d(num_classes: int, last_gamma: bool) -> torch.nn.Module:
    net = ResNet(Bottleneck, [1, 1, 1, 1], radix=2, groups=1, bottleneck_width=64,
                 deep_stem=True, stem_width=32, avg_down=True, avd=True, avd_first=False,
                 num_classes=num_classes)
    if last_gamma:
        for module in net.modules():
            if isinstance(module, Bottleneck):
                torch.nn.init.zeros_(module.bn3.weight)
    return net


def random_resized_crop(image: torch.Tensor, size: int, scale: tuple[float, float],
                        gen: torch.Generator) -> torch.Tensor:
    """[3, H, W] float -> [3, size, size]: torchvision's RandomResizedCrop sampling, bilinear."""
    _, height, width = image.shape
    area = height * width
    log_ratio = (math.log(3 / 4), math.log(4 / 3))
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(scale[0], scale[1], generator=gen))
        ratio = math.exp(float(torch.empty(1).uniform_(*log_ratio, generator=gen)))
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=gen))
            left = int(torch.randint(0, width - w + 1, (1,), generator=gen))
            break
    else:  # centre crop of the whole image
        h, w, top, left = height, width, 0, 0
    crop = image[:, top:top + h, left:left + w].unsqueeze(0)
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)[0]


def eval_batch(images: np.ndarray, resize: int, crop: int) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = F.interpolate(x, size=(resize, resize), mode="bilinear", align_corners=False)
    off = (resize - crop) // 2
    return (x[:, :, off:off + crop, off:off + crop] - MEAN) / STD


def smoothed_ce(logits: torch.Tensor, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    k = logits.shape[1]
    targets = torch.full_like(logits, smoothing / (k - 1))
    targets.scatter_(1, labels[:, None], 1.0 - smoothing)
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def param_groups(net: torch.nn.Module, weight_decay: float, disable_bn_wd: bool) -> list[dict]:
    if not disable_bn_wd:
        return [{"params": list(net.parameters()), "weight_decay": weight_decay}]
    decay, no_decay = [], []
    for module in net.modules():
        for name, param in module.named_parameters(recurse=False):
            is_bn = isinstance(module, torch.nn.BatchNorm2d)
            (no_decay if is_bn or name == "bias" else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", help="npz with train_x, train_y, val_x, val_y (uint8 NHWC)")
    parser.add_argument("recipe", help="JSON recipe (the benchmark writes it)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with open(args.recipe) as f:
        recipe = json.load(f)
    torch.manual_seed(args.seed)
    torch.set_num_threads(int(recipe.get("threads", 1)))
    gen = torch.Generator().manual_seed(args.seed)
    data = np.load(args.data)
    train_x = torch.from_numpy(data["train_x"]).permute(0, 3, 1, 2).float() / 255
    train_y = torch.from_numpy(data["train_y"]).long()
    lr = recipe["lr_per_step"]
    batch, crop = recipe["batch_size"], recipe["crop_size"]
    steps_per_epoch = len(train_y) // batch  # drop_remainder, as ours
    assert len(lr) == recipe["epochs"] * steps_per_epoch, "lr schedule length"

    net = resnest14d(recipe["num_classes"], recipe["last_gamma"])
    opt = torch.optim.SGD(param_groups(net, recipe["weight_decay"], recipe["disable_bn_wd"]),
                          lr=lr[0], momentum=recipe["momentum"])
    scale = (recipe["rrc_scale_min"], recipe["rrc_scale_max"])
    step = 0
    for _ in range(recipe["epochs"]):
        net.train()
        order = torch.randperm(len(train_y), generator=gen)
        for b in range(steps_per_epoch):
            idx = order[b * batch:(b + 1) * batch]
            images = []
            for i in idx.tolist():
                image = random_resized_crop(train_x[i], crop, scale, gen)
                if recipe["hflip"] and float(torch.rand(1, generator=gen)) < 0.5:
                    image = image.flip(-1)
                images.append(image)
            x = (torch.stack(images) - MEAN) / STD
            for group in opt.param_groups:
                group["lr"] = lr[step]
            loss = smoothed_ce(net(x), train_y[idx], recipe["label_smoothing"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if not math.isfinite(float(loss)):
                print(json.dumps({"top1": 0.0, "diverged": True}))
                return 0
    net.eval()
    correct = 0
    val_x, val_y = data["val_x"], data["val_y"]
    with torch.no_grad():
        for b in range(0, len(val_y), 64):
            logits = net(eval_batch(val_x[b:b + 64], recipe["eval_resize"], crop))
            correct += int((logits.argmax(1).numpy() == val_y[b:b + 64]).sum())
    print(json.dumps({"top1": 100.0 * correct / len(val_y), "final_lr": lr[step - 1],
                      "steps": step}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
