"""Loading any Hugging Face image-text-to-text checkpoint and wrapping it for LoRA fine-tuning.

The base model is loaded once per process (`session`) and reused for every client and round:
a client only swaps the trainable tensors (LoRA + projector) in and out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoConfig, AutoModelForImageTextToText

from fedmllm.errors import FedmllmError
from fedmllm.model.builtin import BUILT_IN, ensure
from fedmllm.model.collate import PromptCache
from fedmllm.model.compat import load_processor
from fedmllm.model.families import Family, check_model_type, find_family, prompt_rule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """Everything that decides which weights a process loads; the key of the per-process cache."""

    name: str = "tiny"  # "tiny", a hub id, or a local folder
    lora_r: int = 8
    lora_alpha: int = 8
    lora_dropout: float = 0.05
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False


def model_spec(cfg: Any) -> ModelSpec:
    """The spec a run config names: `model`, and the fields of the same names as ModelSpec's."""
    same = {f.name: getattr(cfg, f.name) for f in fields(ModelSpec) if f.name != "name"}
    return ModelSpec(name=cfg.model, **same)


@dataclass
class Session:
    """A PEFT-wrapped model ready for training, its processor and family."""

    model: PeftModel
    processor: object
    family: Family
    device: torch.device
    num_layers: int
    initial: dict[str, torch.Tensor]  # the trainable tensors as first initialised: every run starts here
    prompts: PromptCache = field(default_factory=PromptCache)  # processed samples, reused across rounds


_SESSIONS: dict[ModelSpec, Session] = {}
LOADS = {"count": 0}  # base-model loads in this process; logged, and checked by tests


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """bf16 where the hardware computes it natively, else fp32 (bf16 is 10-400x slower on AVX2)."""
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise FedmllmError(f"dtype: '{dtype}' is not one of auto, float32, bfloat16, float16") from None


def resolve_source(name: str) -> str:
    """The path or hub id to hand to `from_pretrained`; builds the tiny model on first use (one
    fixed checkpoint, like a hub model: run seeds never change the base weights)."""
    if name in BUILT_IN:  # smol needs its optional extra; its ensure says how to install it
        return str(ensure(name))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise FedmllmError(f"{path}: not a model folder (config.json not found)")
        return str(path)
    return name  # a hub id: transformers resolves it (from its cache when offline)


def check_model(spec: ModelSpec) -> str:
    """The checkpoint's model type, after checking that its config loads and fedmllm may try it."""
    source = resolve_source(spec.name)
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError, ImportError) as e:
        raise FedmllmError(f"model '{spec.name}': cannot load ({str(e).splitlines()[0]})") from None
    return check_model_type(config, spec.name)


def load_base(spec: ModelSpec) -> tuple[torch.nn.Module, object, str]:
    model_type = check_model(spec)
    source = resolve_source(spec.name)
    device = resolve_device(spec.device)
    try:
        processor = load_processor(source, trust_remote_code=spec.trust_remote_code)
        model = AutoModelForImageTextToText.from_pretrained(
            source,
            dtype=resolve_dtype(spec.dtype, device),
            trust_remote_code=spec.trust_remote_code,
        )
    except (OSError, ValueError, ImportError) as e:
        # transformers says "not a valid model identifier" / "Unrecognized configuration" here
        raise FedmllmError(f"model '{spec.name}': cannot load ({str(e).splitlines()[0]})") from None
    check_chat_template(processor, spec.name, model_type)
    LOADS["count"] += 1
    log.info("loaded base model %s (load #%d in this process)", source, LOADS["count"])
    return model.to(device), processor, model_type


def check_chat_template(processor: object, name: str, model_type: str) -> None:
    """Prompts go through the processor's chat template: a checkpoint without one gets its
    family's from families.PROMPT_RULES, or stops here."""
    if getattr(processor, "chat_template", None):
        return
    fallback = prompt_rule(processor).chat_template
    if fallback is None:
        raise FedmllmError(
            f"model '{name}' (model type '{model_type}'): its processor has no chat template "
            "(fedmllm builds every prompt with it; add one to the checkpoint's chat_template.jinja)"
        )
    processor.chat_template = fallback


def wrap_lora(model: torch.nn.Module, family: Family, spec: ModelSpec) -> PeftModel:
    """LoRA on the language model's attention, projector trained in full, all else frozen."""
    config = LoraConfig(
        r=spec.lora_r,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules=family.targets,
        modules_to_save=list(family.projectors),
        task_type="CAUSAL_LM",
    )
    # LoRA A matrices are random; a fixed seed makes the initial adapter part of the starting
    # checkpoint, shared by every run seed (seeds vary data order, partitions and sampling)
    torch.manual_seed(0)
    return get_peft_model(model, config)


def session(spec: ModelSpec) -> Session:
    """The process-wide model for `spec`, loaded on first use."""
    if spec not in _SESSIONS:
        base, processor, _ = load_base(spec)
        family = find_family(base, spec.name)
        model = wrap_lora(base, family, spec)
        _SESSIONS[spec] = Session(
            model=model,
            processor=processor,
            family=family,
            device=resolve_device(spec.device),
            num_layers=base.config.get_text_config().num_hidden_layers,
            initial=trainable_state(model),
        )
    return _SESSIONS[spec]


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors that travel: every parameter with requires_grad, as fp32 CPU copies."""
    return {
        name: p.detach().to("cpu", torch.float32, copy=True) for name, p in model.named_parameters() if p.requires_grad
    }


def load_trainable(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy `state` into the model's trainable parameters; names must match exactly."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if params.keys() != state.keys():
        missing, extra = params.keys() - state.keys(), state.keys() - params.keys()
        raise FedmllmError(
            f"trainable parameters do not match: missing {sorted(missing)[:3]}, extra {sorted(extra)[:3]}"
        )
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state[name])
