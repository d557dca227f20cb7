from __future__ import annotations

from pathlib import Path

import pytest

CORPUS = [
    "The first Nobel Prize in Physics was awarded in 1901 to Wilhelm Conrad Röntgen.",
    "Order A-12345 shipped on 2024-03-17 with tracking 1Z999AA10123456784.",
    "def area(r):\n    if r < 3:\n        return 3.14 * r * r\n    return None",
    'Config: {"retries": 3, "timeout_s": 2.5, "url": "https://api.example.com/v1"}',
    "Pay USD 1,234,567.89 by email to billing@example.com; dose 3.5 mg twice a day.",
    "Logs are in /var/log/app/server.log and ./conf/settings.yaml on the host.",
] * 20


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random two-layer GPT-2 with a byte-level BPE trained here: plumbing, not quality."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    torch.manual_seed(0)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    config = GPT2Config(vocab_size=len(fast), n_positions=512, n_embd=32, n_layer=2, n_head=2)
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    GPT2LMHeadModel(config).save_pretrained(str(folder))
    fast.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_llmlingua2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random two-layer BERT token classifier named as upstream's LLMLingua-2 code requires."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForTokenClassification, PreTrainedTokenizerFast

    torch.manual_seed(0)
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(
        CORPUS, trainers.WordPieceTrainer(vocab_size=500, special_tokens=specials)
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    config = BertConfig(
        vocab_size=len(fast),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=2,
    )
    folder = tmp_path_factory.mktemp("tiny") / "tiny-bert-base-multilingual-cased"
    BertForTokenClassification(config).save_pretrained(str(folder))
    fast.save_pretrained(str(folder))
    return folder
