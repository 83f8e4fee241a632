"""Loading processors with a video slot on machines without torchvision.

In transformers 5 every video processor needs torchvision, and a processor whose `__init__` has a
`video_processor` argument (LLaVA-OneVision, Qwen2-VL, Qwen2.5-VL, Qwen3-VL and Qwen3.5, InternVL,
MiniCPM-V 4.6, SmolVLM) cannot be constructed
or loaded without it, even for images only: `AutoProcessor.from_pretrained` fails with
"video_processing_auto requires the Torchvision library". fedmllm never feeds videos, so
`load_processor` falls back to an image-only subclass of the same processor: `ProcessorMixin` reads
a processor's sub-processors from its `__init__` signature, so leaving `video_processor` out of the
signature makes it load (and save) the image processor and the tokenizer only. The subclasses
keep their base class's `__name__`, so a processor saved from one records the original class and
loads with plain `AutoProcessor` wherever torchvision is installed. PixtralProcessor (Mistral 3)
has no video slot but imports a torchvision module: `pixtral_processor` below.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from transformers import (
    AutoConfig,
    AutoProcessor,
    InternVLProcessor,
    LlavaOnevisionProcessor,
    MiniCPMV4_6Processor,
    ProcessorMixin,
    Qwen2_5_VLProcessor,
    Qwen2VLProcessor,
    Qwen3VLProcessor,
    SmolVLMProcessor,
)
from transformers.utils import is_torchvision_available

log = logging.getLogger(__name__)


class ImageOnlyLlavaOnevisionProcessor(LlavaOnevisionProcessor):
    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        num_image_tokens=None,
        vision_feature_select_strategy=None,
        chat_template=None,
        image_token="<image>",
        video_token="<video>",
        vision_aspect_ratio="anyres_max_9",
        **kwargs,
    ):
        super().__init__(
            image_processor,
            tokenizer,
            None,
            num_image_tokens=num_image_tokens,
            vision_feature_select_strategy=vision_feature_select_strategy,
            chat_template=chat_template,
            image_token=image_token,
            video_token=video_token,
            vision_aspect_ratio=vision_aspect_ratio,
            **kwargs,
        )


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):  # noqa: N801 (mirrors the transformers name)
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class ImageOnlyQwen3VLProcessor(Qwen3VLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class ImageOnlyInternVLProcessor(InternVLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, image_seq_length: int = 256, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, image_seq_length, chat_template, **kwargs)


# the tokenizer attributes MiniCPMV4_6Processor.__init__ copies onto the processor
MINICPM_TOKENS = (
    "image_token",
    "video_token",
    "image_token_id",
    "video_token_id",
    "image_start_token",
    "image_end_token",
    "slice_start_token",
    "slice_end_token",
    "image_id_start_token",
    "image_id_end_token",
)


class ImageOnlyMiniCPMV4_6Processor(MiniCPMV4_6Processor):  # noqa: N801 (mirrors the transformers name)
    """MiniCPMV4_6Processor.__init__ also reads the video processor's slice and downsample modes."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)
        self.slice_mode = image_processor.slice_mode
        self.default_use_image_id = image_processor.use_image_id
        self.image_token_divisor = 4 if image_processor.downsample_mode == "4x" else 16
        for name in MINICPM_TOKENS:
            setattr(self, name, getattr(tokenizer, name))


class ImageOnlySmolVLMProcessor(SmolVLMProcessor):
    """SmolVLMProcessor.__init__ also insists on `num2words`, used for video prompts only."""

    def __init__(
        self, image_processor, tokenizer, image_seq_len: int = 169, chat_template: str | None = None, **kwargs
    ):
        self.fake_image_token = getattr(tokenizer, "fake_image_token", "<fake_token_around_image>")
        self.image_token = getattr(tokenizer, "image_token", "<image>")
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.end_of_utterance_token = getattr(tokenizer, "end_of_utterance_token", "<end_of_utterance>")
        self.global_image_token = getattr(tokenizer, "global_image_token", "<global-img>")
        self.image_seq_len = image_seq_len
        self.video_token = getattr(tokenizer, "video_token", "<video>")
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)

    def apply_chat_template(self, conversation, chat_template=None, **kwargs):
        # SmolVLMProcessor's own version reads video defaults (num_frames, fps) from the video processor
        return ProcessorMixin.apply_chat_template(self, conversation, chat_template, **kwargs)


IMAGE_ONLY: dict[str, type[ProcessorMixin]] = {}
for _cls in (
    ImageOnlyLlavaOnevisionProcessor,
    ImageOnlyQwen2VLProcessor,
    ImageOnlyQwen2_5_VLProcessor,
    ImageOnlyQwen3VLProcessor,
    ImageOnlyInternVLProcessor,
    ImageOnlyMiniCPMV4_6Processor,
    ImageOnlySmolVLMProcessor,
):
    _base = _cls.__mro__[1]
    _cls.__name__ = _base.__name__  # saved as "processor_class": the real class
    IMAGE_ONLY[_base.__name__] = _cls


def pixtral_processor() -> type[ProcessorMixin]:
    """PixtralProcessor (Mistral 3), which transformers offers only with torchvision: its module
    imports the torchvision image processor's module for one helper, `get_resize_output_image_size`,
    which the PIL image processor's module defines identically. It is imported with that module
    standing in, for the import only."""
    import sys

    from transformers.models.pixtral import image_processing_pil_pixtral

    name = "transformers.models.pixtral.image_processing_pixtral"
    stand_in = name not in sys.modules and not is_torchvision_available()
    if stand_in:
        sys.modules[name] = image_processing_pil_pixtral
    try:
        from transformers.models.pixtral.processing_pixtral import PixtralProcessor
    finally:
        if stand_in:
            del sys.modules[name]
    return PixtralProcessor


def _processor_class_name(source: str, trust_remote_code: bool) -> str | None:
    """The processor class a checkpoint names (processor_config.json, else tokenizer_config.json)."""
    folder = Path(source)
    if folder.is_dir():
        for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
            path = folder / name
            if path.is_file():
                cls = json.loads(path.read_text()).get("processor_class")
                if cls:
                    return cls
    # a hub id (from the local cache) or a folder that names no class: the model type's default
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    model_type = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code).model_type
    return PROCESSOR_MAPPING_NAMES.get(model_type)


def load_processor(source: str, trust_remote_code: bool = False, **kwargs) -> ProcessorMixin:
    """`AutoProcessor.from_pretrained`, falling back to an image-only processor without torchvision."""
    try:
        return AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code, **kwargs)
    except (ImportError, OSError):
        # ImportError: "...VideoProcessor requires the Torchvision library"; OSError: "Can't load video
        # processor" (a checkpoint saved by an image-only processor has no video processor config)
        if is_torchvision_available():
            raise
        name = _processor_class_name(source, trust_remote_code)
        if name == "PixtralProcessor":
            return pixtral_processor().from_pretrained(source, **kwargs)
        if name not in IMAGE_ONLY:
            raise
        log.info("torchvision is not installed: loading %s without its video processor", name)
        return IMAGE_ONLY[name].from_pretrained(source, **kwargs)
