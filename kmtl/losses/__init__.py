"""Task losses that respect missing labels."""

from kmtl.losses.crf import CRFLoss, crf_log_likelihood
from kmtl.losses.dice import DiceCrossEntropy, DiceLoss, masked_dice
from kmtl.losses.masked import label_entries, masked_loss, present_mask
from kmtl.tasks.loss import resolve_loss

__all__ = [
    "CRFLoss",
    "DiceCrossEntropy",
    "DiceLoss",
    "crf_log_likelihood",
    "label_entries",
    "masked_dice",
    "masked_loss",
    "present_mask",
    "resolve_loss",
]
