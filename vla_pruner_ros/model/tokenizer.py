"""Text tokenizers: the real checkpoint's own files, or a small word-level one built offline.

The built tokenizer is a WordPiece model whose vocabulary is a word list (the prompt template and
the task vocabulary) plus every single character as a word start and as a ``##`` continuation, so
any instruction encodes (unknown words fall back to characters) and prompts stay short: the prompt
`In: What action should the robot take to pick up the red cube?\\nOut:` is 19 tokens. The last
``n_action_bins`` ids are reserved action tokens, as OpenVLA reserves the top of Llama's vocabulary.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from .errors import CheckpointError

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
PROMPT_WORDS = ["in", ":", "what", "action", "should", "the", "robot", "take", "to", "?", "out"]
TASK_WORDS = (
    "pick up put place push pull move lift grasp open close stack on onto in into the a an of to from "
    "left right front back forward backward behind near next top bottom middle center plate bowl bin "
    "tray box cube block cylinder ball sphere can cup mug drawer object red green blue yellow purple "
    "orange white black pink cyan small large and then it"
).split()
CHARACTERS = string.ascii_lowercase + string.digits + string.punctuation


def build_tokenizer(words: list[str] | None = None, n_action_bins: int = 256) -> PreTrainedTokenizerFast:
    """A deterministic word-level tokenizer; no download, same ids on every machine."""
    vocab: dict[str, int] = {}
    for token in (*SPECIAL_TOKENS, *PROMPT_WORDS, *TASK_WORDS, *(words or []), *CHARACTERS,
                  *(f"##{c}" for c in CHARACTERS)):
        vocab.setdefault(token.lower() if not token.startswith("<") else token, len(vocab))
    for b in range(n_action_bins):  # ids base-n .. base-1; the id of bin b is base-1-b
        vocab[f"<act_{n_action_bins - 1 - b}>"] = len(vocab)
    core = Tokenizer(models.WordPiece(vocab, unk_token="<unk>", continuing_subword_prefix="##"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>")


def load_tokenizer(checkpoint_dir: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved in a checkpoint directory (local files only)."""
    checkpoint_dir = Path(checkpoint_dir)
    if not any((checkpoint_dir / f).exists() for f in ("tokenizer.json", "tokenizer.model")):
        raise CheckpointError(
            f"{checkpoint_dir} has no tokenizer (tokenizer.json or tokenizer.model); "
            "a checkpoint directory must carry its tokenizer files")
    try:
        settings = checkpoint_dir / "tokenizer_config.json"
        ours = ("PreTrainedTokenizerFast", "TokenizersBackend")  # what save_pretrained writes for ours
        if (checkpoint_dir / "tokenizer.json").exists() and settings.exists() and \
                json.loads(settings.read_text()).get("tokenizer_class") in ours:
            return PreTrainedTokenizerFast.from_pretrained(str(checkpoint_dir), local_files_only=True)  # ours
        return AutoTokenizer.from_pretrained(str(checkpoint_dir), local_files_only=True)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot load the tokenizer in {checkpoint_dir}: {err}") from None


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str, suffix_token_id: int | None) -> list[int]:
    """Token ids of a prompt with BOS first; OpenVLA also appends Llama's empty token (29871) if missing."""
    ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    if not ids or ids[0] != tokenizer.bos_token_id:
        ids = [tokenizer.bos_token_id, *ids]
    if suffix_token_id is not None and ids[-1] != suffix_token_id:
        ids.append(suffix_token_id)
    return ids
