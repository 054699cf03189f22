"""A tiny randomly initialised BERT saved as a local encoder folder.

It stands for "your own encoder in a folder" and lets a test train on a machine where no encoder
package is installed (the GPU check runs on a machine that can download nothing). Its vocabulary is
the characters of the given texts, as WordPiece pieces, so every sentence tokenises without [UNK]s.
"""
from __future__ import annotations

from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tiny_bert(folder: Path, texts, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """Write config, weights (seeded) and tokenizer of a small BERT with no dropout into ``folder``."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    chars = sorted({c for text in texts for c in str(text).lower() if not c.isspace()})
    vocab = SPECIAL + chars + [f"##{c}" for c in chars]
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=128,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    with torch.random.fork_rng():  # leave the caller's random stream alone
        torch.manual_seed(seed)
        model = BertModel(config, add_pooling_layer=False)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    # no accent stripping: it would split Hangul syllables into jamo, which are not in the vocabulary
    BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, strip_accents=False).save_pretrained(folder)
    return folder
