from .evaluation import compute_accuracy

__all__ = ["compute_accuracy"]
