"""Task losses that respect missing labels."""

from kmtl.losses.dice import DiceCrossEntropy, DiceLoss, masked_dice
from kmtl.losses.masked import label_entries, masked_loss, present_mask
from kmtl.tasks.loss import resolve_loss

__all__ = ["DiceCrossEntropy", "DiceLoss", "label_entries", "masked_dice", "masked_loss", "present_mask", "resolve_loss"]
