"""Dassl v0.6.3 defaults (docs/design/engine.md §2.3-2.4), plus vlprompt's own keys (marked "vlprompt")."""
from yacs.config import CfgNode as CN

_C = CN()
_C.VERSION = 1
_C.OUTPUT_DIR = "./output"
_C.RESUME = ""
_C.SEED = -1
_C.USE_CUDA = True
_C.VERBOSE = True

_C.INPUT = CN()
_C.INPUT.SIZE = (224, 224)
_C.INPUT.INTERPOLATION = "bilinear"
_C.INPUT.TRANSFORMS = ()
_C.INPUT.NO_TRANSFORM = False
_C.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]
_C.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
_C.INPUT.CROP_PADDING = 4
_C.INPUT.RRCROP_SCALE = (0.08, 1.0)
_C.INPUT.CUTOUT_N = 1
_C.INPUT.CUTOUT_LEN = 16
_C.INPUT.GN_MEAN = 0.0
_C.INPUT.GN_STD = 0.15
_C.INPUT.RANDAUGMENT_N = 2
_C.INPUT.RANDAUGMENT_M = 10
_C.INPUT.COLORJITTER_B = 0.4
_C.INPUT.COLORJITTER_C = 0.4
_C.INPUT.COLORJITTER_S = 0.4
_C.INPUT.COLORJITTER_H = 0.1
_C.INPUT.RGS_P = 0.2
_C.INPUT.GB_P = 0.5
_C.INPUT.GB_K = 21

_C.DATASET = CN()
_C.DATASET.ROOT = ""
_C.DATASET.NAME = ""
_C.DATASET.SOURCE_DOMAINS = ()
_C.DATASET.TARGET_DOMAINS = ()
_C.DATASET.NUM_LABELED = -1
_C.DATASET.NUM_SHOTS = -1
# vlprompt: a class with fewer training images than NUM_SHOTS is an error (False) or uses all of them, with a
# warning naming the short classes (True: Dassl's silent behaviour, made visible)
_C.DATASET.CAP_SHOTS = False
_C.DATASET.VAL_PERCENT = 0.1
_C.DATASET.STL10_FOLD = -1
_C.DATASET.CIFAR_C_TYPE = ""
_C.DATASET.CIFAR_C_LEVEL = 1
_C.DATASET.ALL_AS_UNLABELED = False
_C.DATASET.SUBSAMPLE_CLASSES = "all"  # added by the CoOp family's extend_cfg: all / base / new
# vlprompt: a corrupt or unreadable image stops the run before training (False) or is skipped and counted (True)
_C.DATASET.SKIP_BAD_IMAGES = False

_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4
_C.DATALOADER.K_TRANSFORMS = 1
_C.DATALOADER.RETURN_IMG0 = False
_C.DATALOADER.TRAIN_X = CN()
_C.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_X.BATCH_SIZE = 32
_C.DATALOADER.TRAIN_X.N_DOMAIN = 0
_C.DATALOADER.TRAIN_X.N_INS = 16
_C.DATALOADER.TRAIN_U = CN()
_C.DATALOADER.TRAIN_U.SAME_AS_X = True
_C.DATALOADER.TRAIN_U.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_U.BATCH_SIZE = 32
_C.DATALOADER.TRAIN_U.N_DOMAIN = 0
_C.DATALOADER.TRAIN_U.N_INS = 16
_C.DATALOADER.TEST = CN()
_C.DATALOADER.TEST.SAMPLER = "SequentialSampler"
_C.DATALOADER.TEST.BATCH_SIZE = 32

_C.MODEL = CN()
_C.MODEL.INIT_WEIGHTS = ""
_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = ""
# vlprompt: an open_clip pretrained tag for an open_clip MODEL.BACKBONE.NAME (e.g. ViT-B-16 laion2b_s34b_b88k);
# empty for OpenAI's weights (Dassl's bool, which no CLIP trainer read)
_C.MODEL.BACKBONE.PRETRAINED = ""
# vlprompt: local CLIP weights instead of the download (OpenAI JIT archive or OpenAI-format state dict; for an
# open_clip name, an open_clip checkpoint)
_C.MODEL.BACKBONE.PATH = ""
# vlprompt: encode class prompts only up to their longest end token (exact: causal mask); False = upstream
_C.MODEL.TEXT_TRUNCATE = True
# vlprompt: encode the start token and shared context once, not once per class (exact: causal mask); False = upstream
_C.MODEL.TEXT_SHARED_PREFIX = True
# vlprompt: autocast dtype of PREC "amp" (fp16 as upstream, or bf16: no loss scaling needed)
_C.MODEL.AMP_DTYPE = "fp16"
_C.MODEL.HEAD = CN()
_C.MODEL.HEAD.NAME = ""
_C.MODEL.HEAD.HIDDEN_LAYERS = ()
_C.MODEL.HEAD.ACTIVATION = "relu"
_C.MODEL.HEAD.BN = True
_C.MODEL.HEAD.DROPOUT = 0.0

_C.OPTIM = CN()
_C.OPTIM.NAME = "adam"
_C.OPTIM.LR = 0.0003
_C.OPTIM.WEIGHT_DECAY = 5e-4
_C.OPTIM.MOMENTUM = 0.9
_C.OPTIM.SGD_DAMPNING = 0
_C.OPTIM.SGD_NESTEROV = False
_C.OPTIM.RMSPROP_ALPHA = 0.99
_C.OPTIM.ADAM_BETA1 = 0.9
_C.OPTIM.ADAM_BETA2 = 0.999
# Adam epsilon; from SEP's modified Dassl (only the "adam" optimizer reads it)
_C.OPTIM.EPS = 1e-8
_C.OPTIM.STAGED_LR = False
_C.OPTIM.NEW_LAYERS = ()
_C.OPTIM.BASE_LR_MULT = 0.1
_C.OPTIM.LR_SCHEDULER = "single_step"
_C.OPTIM.STEPSIZE = (-1,)
_C.OPTIM.GAMMA = 0.1
_C.OPTIM.MAX_EPOCH = 10
_C.OPTIM.WARMUP_EPOCH = -1
_C.OPTIM.WARMUP_TYPE = "linear"
_C.OPTIM.WARMUP_CONS_LR = 1e-5
_C.OPTIM.WARMUP_MIN_LR = 1e-5
_C.OPTIM.WARMUP_RECOUNT = True

_C.TRAIN = CN()
_C.TRAIN.CHECKPOINT_FREQ = 0
_C.TRAIN.PRINT_FREQ = 10
_C.TRAIN.COUNT_ITER = "train_x"
# vlprompt: checkpoint (with RNG state) after every epoch so a killed run resumes from its last complete epoch;
# files kept only for resuming are removed once superseded
_C.TRAIN.SAVE_RESUME_STATE = True

_C.TEST = CN()
_C.TEST.EVALUATOR = "Classification"
_C.TEST.PER_CLASS_RESULT = False
_C.TEST.COMPUTE_CMAT = False
_C.TEST.NO_TEST = False
_C.TEST.SPLIT = "test"
_C.TEST.FINAL_MODEL = "last_step"
# vlprompt: also write <OUTPUT_DIR>/logits_<split>.pt (logits, labels, impaths) at each evaluation
_C.TEST.SAVE_LOGITS = False
# vlprompt: encode the class prompts once per evaluation when they do not depend on the image (exact);
# False recomputes them for every test batch, as upstream
_C.TEST.CACHE_TEXT_FEATURES = True
# vlprompt: OT trainers (PLOT, PLOTPP, ALIGN) log the transport plans' entropy relative to the uniform plan and
# the Sinkhorn iterations per evaluation
_C.TEST.OT_DIAGNOSTICS = False

_C.TRAINER = CN()
_C.TRAINER.NAME = ""
# Dassl's built-in trainer nodes: CoOp-family train.py does not remove them, so they appear in every dump
_C.TRAINER.MCD = CN({"N_STEP_F": 4})
_C.TRAINER.MME = CN({"LMDA": 0.1})
_C.TRAINER.CDAC = CN({"CLASS_LR_MULTI": 10, "RAMPUP_COEF": 30, "RAMPUP_ITRS": 1000, "TOPK_MATCH": 5,
                      "P_THRESH": 0.95, "STRONG_TRANSFORMS": ()})
_C.TRAINER.SE = CN({"EMA_ALPHA": 0.999, "CONF_THRE": 0.95, "RAMPUP": 300})
_C.TRAINER.M3SDA = CN({"LMDA": 0.5, "N_STEP_F": 4})
_C.TRAINER.DAEL = CN({"WEIGHT_U": 0.5, "CONF_THRE": 0.95, "STRONG_TRANSFORMS": ()})
_C.TRAINER.CROSSGRAD = CN({"EPS_F": 1.0, "EPS_D": 1.0, "ALPHA_F": 0.5, "ALPHA_D": 0.5})
_C.TRAINER.DDAIG = CN({"G_ARCH": "", "LMDA": 0.3, "CLAMP": False, "CLAMP_MIN": -1.0, "CLAMP_MAX": 1.0,
                       "WARMUP": 0, "ALPHA": 0.5})
_C.TRAINER.DAELDG = CN({"WEIGHT_U": 0.5, "CONF_THRE": 0.95, "STRONG_TRANSFORMS": ()})
_C.TRAINER.DOMAINMIX = CN({"TYPE": "crossdomain", "ALPHA": 1.0, "BETA": 1.0})
_C.TRAINER.ENTMIN = CN({"LMDA": 1e-3})
_C.TRAINER.MEANTEACHER = CN({"WEIGHT_U": 1.0, "EMA_ALPHA": 0.999, "RAMPUP": 5})
_C.TRAINER.MIXMATCH = CN({"WEIGHT_U": 100.0, "TEMP": 2.0, "MIXUP_BETA": 0.75, "RAMPUP": 20000})
_C.TRAINER.FIXMATCH = CN({"WEIGHT_U": 1.0, "CONF_THRE": 0.95, "STRONG_TRANSFORMS": ()})
