"""Finding what fedmllm trains in any image-text-to-text model, from the model's own structure.

Three things: the language model's decoder layers (`model.get_decoder()`, the transformers base
classes' own lookup, and its ModuleList of `text_config.num_hidden_layers` layers), the attention
projections inside them (every Linear of a module whose class is an `...Attention`: LoRA's
targets), and the multimodal projector (modules outside the language model with a projector's
name: trained in full). What it cannot find stops the run with a message naming the model type
and the missing part; families.NOT_WORKING lists the model types known not to work.
"""

from __future__ import annotations

import re

from torch import nn

from fedmllm.errors import FedmllmError

# the names transformers gives the vision-to-text projector (an item of a ModuleList counts under
# the list's name: Qwen3-VL's `deepstack_merger_list.0`, `.1`, ... feed deeper decoder layers)
PROJECTOR_NAMES = frozenset(
    {
        "multi_modal_projector",
        "mm_projector",
        "projector",
        "merger",
        "connector",
        "resampler",
        "aligner",
        "vision_projection",
        "language_projection",
        "image_to_text_projection",
        "deepstack_merger_list",
    }
)
# the attention projections' usual names: the fallback where no module's class says "Attention"
ATTENTION_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj")


def decoder_path(model: nn.Module, where: str) -> str:
    """The module path of the language model: the decoder the transformers base classes name."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    path = next((name for name, m in model.named_modules() if m is decoder), None)
    if not path:  # `model` itself (or nothing): no separate language model to find layers in
        raise FedmllmError(f"{where}: get_decoder() names no separate language model")
    return path


def layers_path(model: nn.Module, language_model: str, num_layers: int, where: str) -> str:
    """The path of the language model's `layers` ModuleList of `num_layers` decoder layers (the
    decoder's own, or its inner model's: `language_model.model.layers` in a ...ForCausalLM)."""
    decoder = model.get_submodule(language_model)
    lists = [n for n, m in decoder.named_modules() if isinstance(m, nn.ModuleList) and len(m) == num_layers]
    named = sorted((n for n in lists if n.rsplit(".", 1)[-1] == "layers"), key=len)
    if named:
        return f"{language_model}.{named[0]}"
    raise FedmllmError(
        f"{where}: no `layers` list of {num_layers} decoder layers under '{language_model}' "
        f"(ModuleLists of that length: {lists or 'none'})"
    )


def attention_linears(model: nn.Module, layers: str, where: str) -> list[str]:
    """Every attention projection in the decoder layers, as full module paths."""
    found: list[str] = []
    for index, layer in enumerate(model.get_submodule(layers)):
        prefix = f"{layers}.{index}"
        blocks = [n for n, m in layer.named_modules() if n and type(m).__name__.endswith("Attention")]
        blocks = [n for n in blocks if not any(n.startswith(b + ".") for b in blocks)]  # outermost only
        for name, module in layer.named_modules():
            if not isinstance(module, nn.Linear):
                continue
            inside = any(name.startswith(b + ".") for b in blocks)
            if inside or (not blocks and name.rsplit(".", 1)[-1] in ATTENTION_LINEARS):
                found.append(f"{prefix}.{name}")
    if not found:
        raise FedmllmError(f"{where}: no attention projections (Linear layers of an ...Attention module) in '{layers}'")
    return found


def projector_paths(model: nn.Module, language_model: str, where: str) -> list[str]:
    """The outermost modules outside the language model named like a multimodal projector."""
    found: list[str] = []
    for name, _ in model.named_modules():
        parts = name.split(".")
        leaf = parts[-2] if parts[-1].isdigit() and len(parts) > 1 else parts[-1]
        if leaf not in PROJECTOR_NAMES or parts[-1] == "deepstack_merger_list":  # its items, not the list
            continue
        if name == language_model or name.startswith(language_model + "."):
            continue
        if not any(name.startswith(f + ".") for f in found):
            found.append(name)
    if not found:
        raise FedmllmError(
            f"{where}: no multimodal projector (no module outside '{language_model}' named "
            f"{' / '.join(sorted(PROJECTOR_NAMES))})"
        )
    return found


def target_pattern(model: nn.Module, layers: str, linears: list[str], where: str) -> str:
    """A peft `target_modules` regex (peft full-matches it) for exactly `linears`: the layer index
    becomes \\d+, the rest is spelled out (a bare ["q_proj", ...] would also match the vision tower)."""
    prefix = f"{layers}."
    suffixes = sorted({re.sub(r"^\d+\.", "", name[len(prefix) :]) for name in linears})
    pattern = re.escape(prefix) + r"\d+\.(" + "|".join(re.escape(s) for s in suffixes) + ")"
    matched = {name for name, _ in model.named_modules() if re.fullmatch(pattern, name)}
    if matched != set(linears):  # a name that is an attention Linear in one layer and not in another
        raise FedmllmError(
            f"{where}: the attention projections differ across layers: {sorted(matched ^ set(linears))[:3]}"
        )
    return pattern
