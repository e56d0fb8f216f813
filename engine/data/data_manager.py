"""DataManager, DatasetWrapper and loaders (docs/design/datasets.md §8, §10)."""
import torch
from tabulate import tabulate
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler

from ..utils.io import read_image
from ..utils.tools import UserError
from .datasets import build_dataset
from .transforms import INTERPOLATION_MODES, build_transform
import torchvision.transforms as T

SAMPLERS = {"RandomSampler": RandomSampler, "SequentialSampler": SequentialSampler}


def build_sampler(sampler_type, data_source):
    if sampler_type not in SAMPLERS:
        raise UserError(f"sampler {sampler_type!r} is not supported; use one of {', '.join(SAMPLERS)}")
    return SAMPLERS[sampler_type](data_source)


def build_data_loader(cfg, sampler_type, data_source, batch_size, tfm=None, is_train=True, drop_last=None):
    """``drop_last`` None = Dassl's rule: drop the incomplete last training batch when there is a full one."""
    loader = DataLoader(
        DatasetWrapper(cfg, data_source, transform=tfm, is_train=is_train),
        batch_size=batch_size,
        sampler=build_sampler(sampler_type, data_source),
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        drop_last=(is_train and len(data_source) >= batch_size) if drop_last is None else drop_last,
        pin_memory=torch.cuda.is_available() and cfg.USE_CUDA,
    )
    if len(loader) == 0:
        raise UserError("a data loader is empty: the dataset split has no images")
    return loader


class DataManager:
    def __init__(self, cfg, custom_tfm_train=None, custom_tfm_test=None, dataset_wrapper=None, train_drop_last=None):
        dataset = build_dataset(cfg)
        if custom_tfm_train is None:
            tfm_train = build_transform(cfg, is_train=True)
        else:
            print("* Using custom transform for training")
            tfm_train = custom_tfm_train
        if custom_tfm_test is None:
            tfm_test = build_transform(cfg, is_train=False)
        else:
            print("* Using custom transform for testing")
            tfm_test = custom_tfm_test

        self.train_loader_x = build_data_loader(
            cfg, cfg.DATALOADER.TRAIN_X.SAMPLER, dataset.train_x, cfg.DATALOADER.TRAIN_X.BATCH_SIZE, tfm_train, True,
            drop_last=train_drop_last)
        self.train_loader_u = None
        self.val_loader = None
        if dataset.val:
            self.val_loader = build_data_loader(
                cfg, cfg.DATALOADER.TEST.SAMPLER, dataset.val, cfg.DATALOADER.TEST.BATCH_SIZE, tfm_test, False)
        self.test_loader = build_data_loader(
            cfg, cfg.DATALOADER.TEST.SAMPLER, dataset.test, cfg.DATALOADER.TEST.BATCH_SIZE, tfm_test, False)

        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname
        self.dataset = dataset
        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    num_classes = property(lambda self: self._num_classes)
    num_source_domains = property(lambda self: self._num_source_domains)
    lab2cname = property(lambda self: self._lab2cname)

    def show_dataset_summary(self, cfg):
        table = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            table.append(["Source", cfg.DATASET.SOURCE_DOMAINS])
        if cfg.DATASET.TARGET_DOMAINS:
            table.append(["Target", cfg.DATASET.TARGET_DOMAINS])
        table.append(["# classes", f"{self.num_classes:,}"])
        table.append(["# train_x", f"{len(self.dataset.train_x):,}"])
        if self.dataset.val:
            table.append(["# val", f"{len(self.dataset.val):,}"])
        table.append(["# test", f"{len(self.dataset.test):,}"])
        print(tabulate(table))


class DatasetWrapper(Dataset):
    """Item dict: label, domain, impath, index, img (and img0 with DATALOADER.RETURN_IMG0)."""

    def __init__(self, cfg, data_source, transform=None, is_train=False):
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform
        self.is_train = is_train
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0
        if self.k_tfm > 1 and transform is None:
            raise UserError("DATALOADER.K_TRANSFORMS > 1 needs a transform")
        interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
        to_img0 = [T.Resize(tuple(cfg.INPUT.SIZE), interpolation=interp), T.ToTensor()]
        if "normalize" in cfg.INPUT.TRANSFORMS:
            to_img0.append(T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
        self.to_img0 = T.Compose(to_img0)

    def __len__(self):
        return len(self.data_source)

    def __getitem__(self, idx):
        item = self.data_source[idx]
        output = {"label": item.label, "domain": item.domain, "impath": item.impath, "index": idx}
        img0 = read_image(item.impath)
        if self.transform is not None:
            if isinstance(self.transform, (list, tuple)):
                for i, tfm in enumerate(self.transform):
                    output["img" if i == 0 else f"img{i + 1}"] = self._transform_image(tfm, img0)
            else:
                output["img"] = self._transform_image(self.transform, img0)
        else:
            output["img"] = img0
        if self.return_img0:
            output["img0"] = self.to_img0(img0)
        return output

    def _transform_image(self, tfm, img0):
        imgs = [tfm(img0) for _ in range(self.k_tfm)]
        return imgs[0] if len(imgs) == 1 else imgs
