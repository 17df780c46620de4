"""The keyframe model's plain-PyTorch Llama decoder against transformers' LlamaModel on the same weights."""

import pytest
import torch

from avatarsync.fkg.decoder import DecoderConfig, KVCache, LlamaDecoder


def _pair(implementation: str):
    transformers = pytest.importorskip("transformers")
    cfg = DecoderConfig(vocab_size=40, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, pad_token_id=0)
    hf = transformers.LlamaModel(transformers.LlamaConfig(
        vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        intermediate_size=64, rope_theta=cfg.rope_theta, pad_token_id=0, attn_implementation=implementation,
        tie_word_embeddings=False)).eval()
    torch.manual_seed(0)
    ours = LlamaDecoder(cfg, implementation).eval()
    missing, unexpected = ours.load_state_dict(hf.state_dict(), strict=True)
    assert not missing and not unexpected
    return hf, ours


def _mask(n_q: int, n_k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(1, 1, n_q, n_k, generator=g) < 0.6
    mask[..., 0] = True  # every query reads something
    return mask


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_decoder_equals_transformers_llama(implementation):
    hf, ours = _pair(implementation)
    x = torch.randn(1, 9, 32, generator=torch.Generator().manual_seed(1))
    pos = torch.tensor([[0, 1, 2, 5, 6, 7, 3, 4, 8]])  # explicit, non-monotone positions as the layout uses
    mask = _mask(9, 9, 2)
    hf_mask = mask if implementation == "sdpa" else torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    with torch.no_grad():
        want = hf(inputs_embeds=x, attention_mask=hf_mask, position_ids=pos).last_hidden_state
        got = ours(inputs_embeds=x, attention_mask=mask, position_ids=pos).last_hidden_state
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_cached_steps_equal_one_pass():
    _, ours = _pair("sdpa")
    x = torch.randn(2, 7, 32, generator=torch.Generator().manual_seed(3))
    x[1, :4] = x[0, :4]  # the rows share their prefix, as keyframe rows do
    pos = torch.arange(7)[None].expand(2, -1)
    mask = torch.ones(7, 7, dtype=torch.bool).tril()[None, None].expand(2, 1, 7, 7)
    with torch.no_grad():
        full = ours(inputs_embeds=x, attention_mask=mask, position_ids=pos).last_hidden_state
        prefix = ours(inputs_embeds=x[:1, :4], attention_mask=mask[:1, :, :4, :4], position_ids=pos[:1, :4],
                      use_cache=True).past_key_values
        cache = KVCache.from_prefix([(layer.keys, layer.values) for layer in prefix.layers], rows=2, room=3)
        steps = [ours(inputs_embeds=x[:, t:t + 1], attention_mask=mask[:, :, t:t + 1, :t + 1],
                      position_ids=pos[:, t:t + 1], past_key_values=cache, use_cache=True).last_hidden_state
                 for t in range(4, 7)]
    torch.testing.assert_close(torch.cat(steps, 1), full[:, 4:], rtol=1e-5, atol=1e-5)
    assert cache.get_seq_length() == 7
