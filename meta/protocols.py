"""The benchmark protocols of the CoOp family and their datasets (torch-free; one place for these facts).

Dataset keys are the names of the yamls in ``configs/datasets/``."""

PROTOCOLS = ("base2new", "few_shot", "cross_dataset", "domain_gen")
TITLES = {"base2new": "Base-to-new generalisation", "few_shot": "Few-shot classification",
          "cross_dataset": "Cross-dataset transfer", "domain_gen": "Domain generalisation"}

# the 11 datasets of CoOp's benchmark, in the papers' table order
B2N_DATASETS = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
                "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")
XD_SOURCE = "imagenet"  # cross-dataset and domain generalisation train one model here
XD_TARGETS = B2N_DATASETS[1:]
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
FEW_SHOTS = (1, 2, 4, 8, 16)
DEFAULT_SHOTS = 16  # base-to-new and the ImageNet model of the transfer protocols

# "transfer" is the method data's section for cross_dataset and domain_gen (one ImageNet model, many targets)
PROTOCOL_SECTION = {"base2new": "base2new", "few_shot": "few_shot", "cross_dataset": "transfer",
                    "domain_gen": "transfer"}

DATASET_ORDER = B2N_DATASETS + DG_TARGETS
DISPLAY = {"imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
           "stanford_cars": "StanfordCars", "oxford_flowers": "Flowers102", "food101": "Food101",
           "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397", "dtd": "DTD", "eurosat": "EuroSAT",
           "ucf101": "UCF101", "imagenetv2": "ImageNet-V2", "imagenet_sketch": "ImageNet-Sketch",
           "imagenet_a": "ImageNet-A", "imagenet_r": "ImageNet-R", "average": "Average"}
# DATASET.NAME (the registered dataset class) -> dataset key
NAME_TO_KEY = {"ImageNet": "imagenet", "Caltech101": "caltech101", "OxfordPets": "oxford_pets",
               "StanfordCars": "stanford_cars", "OxfordFlowers": "oxford_flowers", "Food101": "food101",
               "FGVCAircraft": "fgvc_aircraft", "SUN397": "sun397", "DescribableTextures": "dtd",
               "EuroSAT": "eurosat", "UCF101": "ucf101", "ImageNetV2": "imagenetv2",
               "ImageNetSketch": "imagenet_sketch", "ImageNetA": "imagenet_a", "ImageNetR": "imagenet_r",
               "SyntheticShapes": "synthetic_shapes"}


def default_datasets(protocol):
    return {"base2new": B2N_DATASETS, "few_shot": B2N_DATASETS, "cross_dataset": XD_TARGETS,
            "domain_gen": DG_TARGETS}[protocol]
