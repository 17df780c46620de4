"""Keyframe logits -> code vectors: the window pasted into the reference, argmax vs expected decode."""

import pytest
import torch

from avatarsync.fkg.keyframe_codes import code_vectors_from_logits, full_grid_logits, keyframe_code_vectors
from avatarsync.fkg.layout import crop_window, paste_window
from avatarsync.fkg.model import digit_logits
from avatarsync.fkg.vocab import FKGVocab, split_codes
from avatarsync.tokenizers import VisualTokenizer
from avatarsync.tokenizers.config import TokenizerConfig

BOX = [0.25, 0.5, 0.75, 1.0]


def _tokenizer(bits: int, factors: int) -> VisualTokenizer:
    torch.manual_seed(0)
    return VisualTokenizer(TokenizerConfig(size="tiny", codebook_bits=bits, factors=factors)).eval()


def _confident(codes: torch.Tensor, factors: tuple[int, ...], scale: float = 40.0) -> torch.Tensor:
    """Logits ``[k, f, sum(factors)]`` that put all mass on ``codes [k, f]``."""
    digits = split_codes(codes, factors)
    return torch.cat([torch.nn.functional.one_hot(digits[..., i], n).float() * scale
                      for i, n in enumerate(factors)], -1)


@pytest.mark.parametrize("bits,tok_factors,factorize_above", [(10, 1, 4096), (12, 2, 1024)])
def test_confident_logits_give_the_argmax_codes_and_the_window_is_pasted(bits, tok_factors, factorize_above):
    tok = _tokenizer(bits, tok_factors)
    vocab = FKGVocab(units=["a"], codebook_size=tok.codebook_size, factorize_above=factorize_above)
    g = torch.Generator().manual_seed(1)
    ref = torch.randint(0, tok.codebook_size, (8, 8), generator=g)
    window = torch.randint(0, tok.codebook_size, (3, *crop_window(ref, BOX).shape), generator=g)
    logits = _confident(window.flatten(1), vocab.factors)
    full = full_grid_logits(logits, ref, vocab.factors, BOX)
    picked = torch.stack([d.argmax(-1) for d in digit_logits(full, vocab.factors)], -1)
    assert torch.equal(picked, split_codes(paste_window(ref, window, BOX), vocab.factors))
    codes = paste_window(ref, window, BOX)
    hard = keyframe_code_vectors(tok, codes, None, ref, vocab.factors, vocab.codebook_size, BOX, "argmax")
    soft = keyframe_code_vectors(tok, codes, logits, ref, vocab.factors, vocab.codebook_size, BOX, "expected")
    torch.testing.assert_close(hard, tok.indices_to_codes(codes))
    torch.testing.assert_close(soft, hard, atol=1e-4, rtol=0)


def test_an_even_split_between_two_codes_decodes_their_mean():
    tok = _tokenizer(10, 1)
    vocab = FKGVocab(units=["a"], codebook_size=tok.codebook_size)
    ref = torch.zeros(8, 8, dtype=torch.long)
    a, b = torch.full((1, 1), 5), torch.full((1, 1), 900)
    logits = torch.full((1, 64, tok.codebook_size), -40.0)
    logits[..., 5] = logits[..., 900] = 0.0
    vec = code_vectors_from_logits(tok, logits, ref, vocab.factors, vocab.codebook_size, None)
    mean = (tok.indices_to_codes(a.expand(8, 8)[None]) + tok.indices_to_codes(b.expand(8, 8)[None])) / 2
    torch.testing.assert_close(vec, mean, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="needs the decoding logits"):
        keyframe_code_vectors(tok, ref[None], None, ref, vocab.factors, vocab.codebook_size, None, "expected")
    with pytest.raises(ValueError, match="must be one of"):
        keyframe_code_vectors(tok, ref[None], logits, ref, vocab.factors, vocab.codebook_size, None, "mode")
