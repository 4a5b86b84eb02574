"""A tiny character-level HF tokenizer for fast tests (fits the 96-token tiny models).

ids 0-2 are <pad>/<eos>/<bos> (the tiny models' pad/eos/bos), 3 is an unused special
token; then whole-word ``true``/``false``/``null`` and single characters.
"""

from __future__ import annotations

import string

SPECIALS = ["<pad>", "<eos>", "<bos>", "<extra>"]
WORDS = ["true", "false", "null"]
CHARS = list(string.digits + string.ascii_lowercase + "ABC" + ' {}[]":,.-+@_/\\|')


def tiny_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS + CHARS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="_"))
    alternatives = "|".join(WORDS) + "|."
    core.pre_tokenizer = pre_tokenizers.Split(Regex(alternatives), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>",
                                  bos_token="<bos>", additional_special_tokens=["<extra>"])
    tok.name_or_path = "tandem-tiny-char"
    return tok
