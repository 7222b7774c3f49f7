"""Custom Keras layers for multi-task learning (`keras.ops` only).

Importing this package registers every layer under the `kmtl` package name,
so `.keras` files that use them load with `safe_mode=True` and no
`custom_objects`.
"""

from kmtl.layers.channel_groups import ChannelGroups, GroupedLSTM
from kmtl.layers.characters import CharacterCNN
from kmtl.layers.crf import CRF
from kmtl.layers.cross_stitch import CrossStitch
from kmtl.layers.feature_fusion import FeatureFusion
from kmtl.layers.gradient_reversal import GradientReversal
from kmtl.layers.label_embedding import LabelEmbedding
from kmtl.layers.mixture_of_experts import ExpertGate, ExpertMixture, Experts
from kmtl.layers.random_effects import RandomEffects
from kmtl.layers.scheduled_gradient_reversal import ScheduledGradientReversal
from kmtl.layers.sequence_readout import SequenceMean, SequenceReadout
from kmtl.layers.sluice import LayerMixture, SubspaceMixing
from kmtl.layers.stacked_heads import StackedHeads
from kmtl.layers.stop_gradient import StopGradient
from kmtl.layers.tensor_factorized import TensorFactorizedDense

__all__ = [
    "CRF",
    "ChannelGroups",
    "CharacterCNN",
    "CrossStitch",
    "ExpertGate",
    "ExpertMixture",
    "Experts",
    "FeatureFusion",
    "GradientReversal",
    "GroupedLSTM",
    "LabelEmbedding",
    "LayerMixture",
    "RandomEffects",
    "ScheduledGradientReversal",
    "SequenceMean",
    "SequenceReadout",
    "StackedHeads",
    "StopGradient",
    "SubspaceMixing",
    "TensorFactorizedDense",
]
