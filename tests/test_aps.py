"""Channel attention, auxiliary labels and the aux loss."""
import numpy as np
import pytest
import torch

from fastfreq import reference as ref
from fastfreq.aps import AuxLabels, ChannelAttention, ExtendedChannelAttention, aux_loss

CONFIGS = [f"LMH={a}{b}{c}" for a in "01" for b in "01" for c in "01"]


@pytest.mark.parametrize("config", CONFIGS)
def test_labels_match_reference(config):
    band = torch.tensor([0, 1, 2, 0, 1, 2])
    alpha = torch.tensor([0.0, 0.3, 0.5, 0.8, 1.0, 0.1])
    got = AuxLabels(config)(band, alpha)
    want = ref.aux_labels(config, band.numpy(), alpha.numpy())
    assert np.allclose(got.numpy(), want, atol=1e-6)


def test_learnable_labels_and_gradient():
    labels = AuxLabels("learnable")
    with torch.no_grad():
        labels.theta.copy_(torch.tensor([1.0, -0.5, 0.2]))
    band = torch.tensor([0, 1, 2])
    alpha = torch.tensor([0.9, 0.4, 1.0])
    beta = labels(band, alpha)
    want = ref.beta_learnable(band.numpy(), alpha.numpy(), np.array([1.0, -0.5, 0.2]))
    assert np.allclose(beta.detach().numpy(), want, atol=1e-6)
    beta.sum().backward()
    assert labels.theta.grad is not None and labels.theta.grad.abs().sum() > 0
    assert labels.basic_open_ratios().sum().item() == pytest.approx(1.1)


def test_aux_loss_uses_labelled_samples_only():
    v = torch.tensor([0.5, 0.9, 0.2])
    beta = torch.tensor([0.4, 1.0, 0.0])
    got = aux_loss(v, beta, torch.tensor([True, False, True]), lam=100)
    assert got.item() == pytest.approx(ref.aux_loss(v.numpy(), beta.numpy(), [True, False, True], 100))
    # changing an unlabelled sample changes nothing
    v2 = v.clone()
    v2[1] = 0.0
    assert aux_loss(v2, beta, torch.tensor([True, False, True])).item() == pytest.approx(got.item())
    assert aux_loss(v, beta, torch.zeros(3, dtype=torch.bool)).item() == 0.0


def _mask_by_hand(att, feat):
    """Section 3.2's soft mask from the module's weights, written out with
    einsum: v = sigmoid(W2 relu(W1 GAP(feat) + b1) + b2)."""
    pooled = feat.double().mean(dim=(2, 3))
    h = torch.relu(torch.einsum("hc,bc->bh", att.fc1.weight.double(), pooled) + att.fc1.bias.double())
    return torch.sigmoid(torch.einsum("ch,bh->bc", att.fc2.weight.double(), h) + att.fc2.bias.double())


def _conv_bn_by_hand(att, m):
    """Section 3.3's 3x3 convolution (as a sum over the nine shifted copies)
    and training-mode batch norm (batch statistics, biased variance)."""
    w = att.conv.weight.double()
    pad = torch.nn.functional.pad(m.double(), (1, 1, 1, 1))
    H, W = m.shape[-2:]
    y = sum(torch.einsum("oc,bchw->bohw", w[:, :, i, j], pad[:, :, i:i + H, j:j + W])
            for i in range(3) for j in range(3))
    mean, var = y.mean(dim=(0, 2, 3), keepdim=True), y.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    g, b = att.bn.weight.double()[None, :, None, None], att.bn.bias.double()[None, :, None, None]
    return (y - mean) / torch.sqrt(var + att.bn.eps) * g + b


@pytest.mark.parametrize("cls", [ChannelAttention, ExtendedChannelAttention])
def test_attention_mask_and_open_ratio(cls):
    """The basic module pools the feature map itself; the extended one pools its
    conv + BN features; both multiply the INPUT map by the mask, and v_bar is
    the mask's mean per sample."""
    torch.manual_seed(0)
    att = cls(16, hidden=32)
    if cls is ExtendedChannelAttention:   # BN's affine parameters away from (1, 0)
        torch.nn.init.uniform_(att.bn.weight, 0.5, 2.0)
        torch.nn.init.uniform_(att.bn.bias, -1.0, 1.0)
    m = torch.randn(4, 16, 8, 8)
    out = att(m)
    feat = _conv_bn_by_hand(att, m) if cls is ExtendedChannelAttention else m
    want = _mask_by_hand(att, feat)
    torch.testing.assert_close(att.mask.double(), want, rtol=0, atol=1e-6)
    if cls is ExtendedChannelAttention:   # a basic module with these weights is different
        assert (_mask_by_hand(att, m) - want).abs().max() > 1e-2
    torch.testing.assert_close(att.open_ratio.double(), want.mean(1), rtol=0, atol=1e-6)
    torch.testing.assert_close(out.double(), m.double() * want[:, :, None, None], rtol=0, atol=1e-5)


def test_aux_loss_trains_the_open_ratio():
    torch.manual_seed(0)
    att = ChannelAttention(8, hidden=16)
    opt = torch.optim.Adam(att.parameters(), lr=0.02)
    m = torch.randn(16, 8, 4, 4)
    target = torch.full((16,), 0.2)
    att(m)
    assert (att.open_ratio - 0.2).abs().min() > 0.1  # starts near 0.5
    for _ in range(300):
        att(m)
        loss = aux_loss(att.open_ratio, target, torch.ones(16, dtype=torch.bool), lam=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (att.open_ratio - 0.2).abs().max() < 0.02


def test_bad_input():
    with pytest.raises(ValueError, match="config"):
        AuxLabels("LMH=21")
    with pytest.raises(ValueError, match="channels"):
        ChannelAttention(0)
    with pytest.raises(ValueError, match=r"m: expected a \(B, 4"):
        ChannelAttention(4)(torch.randn(2, 5, 3, 3))
    with pytest.raises(RuntimeError, match="forward"):
        ChannelAttention(4).open_ratio
    with pytest.raises(ValueError, match="open_ratio, beta, labelled"):
        aux_loss(torch.zeros(3), torch.zeros(2), torch.ones(3, dtype=torch.bool))
