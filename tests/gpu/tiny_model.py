"""Build a tiny Llama (random weights) and a trained byte-level BPE tokenizer into a Hugging Face
Hub cache, so that `transformers serve` lists it under /v1/models and loads it offline.

Run with the interpreter that has torch and transformers (the machine's own):
    python tiny_model.py HUB_CACHE REPO_ID
Its answers are noise; the engine, the device, and the OpenAI protocol are real.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

TEXT = ["Paris is the capital of France.", "Say hello in one short sentence.",
        "auto-infer serves models from a TOML config.", "The GPU answers with tokens, one at a time.",
        "Hello! How can I help you today?"] * 20
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def build(cache: Path, repo_id: str) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    revision = hashlib.sha1(repo_id.encode()).hexdigest()
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"]
    bpe.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="</s>")
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(snapshot)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(snapshot)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


if __name__ == "__main__":
    print(build(Path(sys.argv[1]), sys.argv[2]))
