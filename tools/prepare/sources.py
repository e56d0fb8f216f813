"""The files each dataset needs and where they come from (DATASETS.md), read by fetch.py and dataset.py."""

DRIVE_VIEW = "https://drive.google.com/file/d/{}/view"
IMAGENET_CLASSNAMES = "gdrive:1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"
# ImageNet-variant folders need a copy of ImageNet's classnames.txt: take it from DATA/imagenet if there.
CLASSNAMES_ITEM = {"name": "classnames.txt",
                   "sources": [("copy:imagenet/classnames.txt", None), (IMAGENET_CLASSNAMES, None)]}


def split_item(name, drive_id):
    return {"name": name, "sources": [("gdrive:" + drive_id, None)]}


# Per dataset (key = the yaml name), the files to fetch, in order. A file lists its sources in order of
# preference: a URL, "gdrive:<id>" or "copy:<path under DATA>", each with the MD5 the host publishes
# (None when unknown). An archive says what to take from it: [(name patterns, destination in the
# dataset folder)]; destination "." merges a folder's content into the dataset folder, a trailing "/"
# puts the matches inside that folder. "creates" names what marks an archive as done when the
# destinations alone do not. "optional" files (raw annotations) are needed only to derive a split, so
# they are fetched only with --with-raw or when the split file cannot be had.
SOURCES = {
    "imagenet": {
        "files": [{"name": "classnames.txt", "sources": [(IMAGENET_CLASSNAMES, None)]}],  # images: prepare_imagenet
    },
    "caltech101": {
        "files": [
            {"name": "caltech-101.zip",  # holds 101_ObjectCategories.tar.gz, extracted in turn
             "sources": [("https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",
                          "3138e1922a9193bfa496528edbbc45d0")],
             "take": [("101_ObjectCategories", "101_ObjectCategories")]},
            split_item("split_zhou_Caltech101.json", "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"),
        ],
    },
    "oxford_pets": {
        "files": [
            {"name": "images.tar.gz",
             "sources": [("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",
                          "5c4f3ee8e5d25df40f4fd59a7f44e54c")],
             "take": [("images", "images")]},
            {"name": "annotations.tar.gz",
             "sources": [("https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz",
                          "95a8c909bbe2e81eed6a22bccdf3f68f")],
             "take": [("annotations", "annotations")], "optional": True},
            split_item("split_zhou_OxfordPets.json", "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"),
        ],
    },
    "stanford_cars": {
        "manual": ("the Stanford hosts have been offline since 2023: get cars_train.tgz, cars_test.tgz, car_devkit.tgz "
                   "and cars_test_annos_withlabels.mat from a copy (see DATASETS.md, Stanford Cars)"),
        "files": [
            {"name": "cars_train.tgz", "sources": [("http://ai.stanford.edu/~jkrause/car196/cars_train.tgz", None)],
             "take": [("cars_train", "cars_train")]},
            {"name": "cars_test.tgz", "sources": [("http://ai.stanford.edu/~jkrause/car196/cars_test.tgz", None)],
             "take": [("cars_test", "cars_test")]},
            {"name": "car_devkit.tgz", "sources": [("https://ai.stanford.edu/~jkrause/cars/car_devkit.tgz", None)],
             "take": [("devkit", "devkit")], "optional": True},
            {"name": "cars_test_annos_withlabels.mat",
             "sources": [("http://ai.stanford.edu/~jkrause/car196/cars_test_annos_withlabels.mat", None)],
             "optional": True},
            split_item("split_zhou_StanfordCars.json", "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"),
        ],
    },
    "oxford_flowers": {
        "files": [
            {"name": "102flowers.tgz",
             "sources": [("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz",
                          "52808999861908f626f3c1f4e79d11fa")],
             "take": [("jpg", "jpg")]},
            {"name": "imagelabels.mat",
             "sources": [("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat",
                          "e0620be6f572b9609742df49c70aed4d")]},
            {"name": "cat_to_name.json", "sources": [("gdrive:1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0", None)]},
            split_item("split_zhou_OxfordFlowers.json", "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"),
        ],
    },
    "food101": {
        "files": [
            {"name": "food-101.tar.gz",
             "sources": [("http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz", "85eeb15f3717b99a5da872d97d918f87")],
             "take": [("food-101", ".")], "creates": ["images"]},
            split_item("split_zhou_Food101.json", "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"),
        ],
    },
    "fgvc_aircraft": {
        "files": [
            {"name": "fgvc-aircraft-2013b.tar.gz",  # only its data/ folder is kept, as the dataset folder
             "sources": [("https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",
                          None)],
             "take": [("data", ".")],
             "creates": ["images", "variants.txt", "images_variant_train.txt", "images_variant_val.txt",
                         "images_variant_test.txt"]},
        ],
    },
    "sun397": {
        "files": [
            {"name": "SUN397.tar.gz",
             "sources": [("http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
                          "8ca2778205c41d23104230ba66911c7a")],
             "take": [("SUN397", "SUN397")]},
            {"name": "Partitions.zip",
             "sources": [("https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip", None)],
             "take": [(("ClassName.txt", "Training_*.txt", "Testing_*.txt"), "./")],
             "creates": ["ClassName.txt", "Training_01.txt", "Testing_01.txt"], "optional": True},
            split_item("split_zhou_SUN397.json", "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"),
        ],
    },
    "dtd": {
        "files": [
            {"name": "dtd-r1.0.1.tar.gz",
             "sources": [("https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
                          "fff73e5086ae6bdbea199a49dfb8a4c1")],
             "take": [("dtd", ".")], "creates": ["images"]},
            split_item("split_zhou_DescribableTextures.json", "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"),
        ],
    },
    "eurosat": {
        "files": [
            {"name": "EuroSAT.zip",  # the Zenodo copy unpacks to EuroSAT_RGB/ instead of 2750/
             "sources": [("https://huggingface.co/datasets/torchgeo/eurosat/resolve/"
                          "c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip", "c8fa014336c82ac7804f0398fcb19387"),
                         ("http://madm.dfki.de/files/sentinel/EuroSAT.zip", None),
                         ("https://zenodo.org/records/7711810/files/EuroSAT_RGB.zip", None)],
             "take": [(("2750", "EuroSAT_RGB"), "2750")]},
            split_item("split_zhou_EuroSAT.json", "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"),
        ],
    },
    "ucf101": {
        "files": [
            {"name": "UCF-101-midframes.zip", "sources": [("gdrive:10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O", None)],
             "take": [("UCF-101-midframes", "UCF-101-midframes")]},
            {"name": "UCF101TrainTestSplits-RecognitionTask.zip",
             "sources": [("https://www.crcv.ucf.edu/data/UCF101/UCF101TrainTestSplits-RecognitionTask.zip", None)],
             "take": [("ucfTrainTestlist", "ucfTrainTestlist")], "optional": True},
            split_item("split_zhou_UCF101.json", "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"),
        ],
    },
    "imagenetv2": {
        "files": [
            {"name": "imagenetv2-matched-frequency.tar.gz",
             "sources": [("https://huggingface.co/datasets/vaishaal/ImageNetV2/resolve/main/"
                          "imagenetv2-matched-frequency.tar.gz", None),
                         ("https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz",
                          None)],
             "take": [("imagenetv2-matched-frequency-format-val", "imagenetv2-matched-frequency-format-val")]},
            CLASSNAMES_ITEM,
        ],
    },
    "imagenet_sketch": {
        "files": [
            {"name": "ImageNet-Sketch.zip", "sources": [("gdrive:1Mj0i5HBthqH1p_yeXzsg22gZduvgoNeA", None)],
             "take": [(("sketch", "images"), "images")]},
            CLASSNAMES_ITEM,
        ],
    },
    "imagenet_a": {
        "files": [
            {"name": "imagenet-a.tar",
             "sources": [("https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar",
                          "c3e55429088dc681f30d81f4726b6595")],
             "take": [("imagenet-a", "imagenet-a")]},
            CLASSNAMES_ITEM,
        ],
    },
    "imagenet_r": {
        "files": [
            {"name": "imagenet-r.tar",
             "sources": [("https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar",
                          "a61312130a589d0ca1a8fca1f2bd3337")],
             "take": [("imagenet-r", "imagenet-r")]},
            CLASSNAMES_ITEM,
        ],
    },
}
