"""``BaselineCNN.features`` runs smp's U-Net decoder loop itself (to keep the stride-4 and stride-2
block outputs); these tests fail loudly when an smp release changes what that loop relies on.
pyproject.toml bounds segmentation-models-pytorch to the releases checked here (0.5, 0.6)."""

from __future__ import annotations

import inspect

import torch
from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder, UnetDecoderBlock

from segcvae.models import BaselineCNN


def test_decoder_block_call_signature_is_the_one_features_uses() -> None:
    params = list(inspect.signature(UnetDecoderBlock.forward).parameters)
    assert params == ["self", "feature_map", "target_height", "target_width", "skip_connection"]
    assert list(inspect.signature(UnetDecoder.forward).parameters) == ["self", "features"]


def test_features_last_block_is_smps_own_decoder_output() -> None:
    torch.manual_seed(0)
    model = BaselineCNN(
        classes=3,
        encoder_name="tu-test_efficientnet",
        encoder_weights=None,
        decoder_channels=(16, 16, 16, 16, 8),
    ).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        feats = model.features(x)
        reference = model.decoder(model.encoder(x))  # smp's UnetDecoder.forward
    assert torch.equal(feats.decoder[-1], reference)
    # the stride-4 and stride-2 blocks are the decoder's last-but-two and last-but-one
    assert [f.shape[-2:] for f in feats.decoder] == [(16, 24), (32, 48), (64, 96)]
