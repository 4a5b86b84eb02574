"""CanvasTemplate / AllowedTokens construction rules."""

import pytest
import torch

from diffusion_engine.template import MASK, AllowedTokens, CanvasTemplate

V = 32


def test_masks_are_shared_by_reference():
    allowed = AllowedTokens(100, V)
    digits = torch.zeros(V, dtype=torch.bool)
    digits[5:10] = True
    allowed[0:50] = digits
    allowed[70] = digits
    allowed[60] = digits.clone()  # a different object: stored separately
    assert len(allowed.masks) == 2
    assert allowed[3] is digits and allowed[70] is digits and allowed[55] is None
    block = allowed.block_mask(48, 52, torch.device("cpu"))
    assert block.shape == (4, V) and block[0].equal(digits) and bool(block[3].all())
    assert allowed.block_mask(80, 90, torch.device("cpu")) is None


def test_bad_masks_say_how_to_fix():
    allowed = AllowedTokens(4, V)
    with pytest.raises(ValueError, match="BoolTensor"):
        allowed[0] = torch.ones(V)
    with pytest.raises(ValueError, match="no token"):
        allowed[0] = torch.zeros(V, dtype=torch.bool)


def test_from_segments_layout():
    quote = torch.zeros(V, dtype=torch.bool)
    quote[7] = True
    tpl = CanvasTemplate.from_segments([[1, 2], 3, (2, quote), [4]], V)
    assert len(tpl) == 8
    assert tpl.tokens.tolist() == [1, 2, MASK, MASK, MASK, MASK, MASK, 4]
    assert tpl.fixed.tolist() == [True, True, False, False, False, False, False, True]
    assert tpl.allowed[5] is quote and tpl.allowed[6] is quote and tpl.allowed[4] is None


def test_fixed_position_needs_a_token():
    with pytest.raises(ValueError, match="fixed position"):
        CanvasTemplate(torch.tensor([MASK]), torch.tensor([True]), AllowedTokens(1, V))
