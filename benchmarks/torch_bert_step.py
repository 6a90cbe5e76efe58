#!/usr/bin/env python3
"""PyTorch side of the text-encoder training-step benchmark (issue 22): transformers' BertModel.

The model of `model.bert.preset` (tiny: 2 layers x 128, 2 heads, FFN 512; mini: 4 x 256, 4 heads,
FFN 1024; small: 4 x 512, 8 heads, FFN 2048; vocabulary 30522, 512 positions), in training mode
(dropout 0.1 on the embeddings, attention probabilities and block outputs, as BERT's config says),
on fixed random token ids (every position a real token: no padding), one process, one thread:

  pairs    P (anchor, positive) pairs a step: 2P sequences of T tokens through the one encoder
  pooling  mean over the tokens (sentence-transformers' default), no projection head
  loss     multiple-negatives ranking (sentence-transformers' MultipleNegativesRankingLoss):
           cross-entropy of each anchor over the P positives, cosine similarity / 0.05
  update   AdamW lr 1e-4, betas (0.9, 0.999), eps 1e-8, weight decay 1e-2

  OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE .venv-verify/bin/python benchmarks/torch_bert_step.py \\
      [--preset mini] [--pairs 64] [--tokens 128] [--steps 10] [--warmup 2]

Needs transformers (launch/verify-python.sh's venv, which sees Debian's torch 1.13). Prints one
JSON object: per-step median milliseconds of forward+loss, backward, optimizer and total.
"""
import os

for name, value in (("OMP_NUM_THREADS", "1"), ("OMP_WAIT_POLICY", "PASSIVE"),
                    ("OPENBLAS_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1")):
    os.environ.setdefault(name, value)

import argparse
import json
import platform
import statistics
import time

import torch
from transformers import BertConfig, BertModel

PRESETS = {  # layers, hidden, heads, intermediate (Config.swift's BERT presets)
    "tiny": (2, 128, 2, 512),
    "mini": (4, 256, 4, 1024),
    "small": (4, 512, 8, 2048),
}
TEMPERATURE = 0.05


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="mini")
    parser.add_argument("--pairs", type=int, default=64, help="P pairs per step (2P sequences)")
    parser.add_argument("--tokens", type=int, default=128, help="T tokens per sequence")
    parser.add_argument("--vocab", type=int, default=30522)
    parser.add_argument("--steps", type=int, default=10, help="measured steps")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured steps first")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(arguments.seed)
    layers, hidden, heads, intermediate = PRESETS[arguments.preset]
    config = BertConfig(vocab_size=arguments.vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=intermediate, max_position_embeddings=512, hidden_act="gelu",
                        attn_implementation="eager")
    model = BertModel(config, add_pooling_layer=False)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
    p, t = arguments.pairs, arguments.tokens
    ids = torch.randint(1000, arguments.vocab, (2 * p, t))
    ids[:, 0] = 101   # [CLS]
    ids[:, -1] = 102  # [SEP]
    mask = torch.ones(2 * p, t, dtype=torch.long)
    labels = torch.arange(p)

    phases = {"forward_loss": [], "backward": [], "optimizer": [], "total": []}
    losses = []
    for step in range(arguments.warmup + arguments.steps):
        start = time.perf_counter()
        hidden_states = model(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = (hidden_states * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
        z = torch.nn.functional.normalize(pooled, dim=-1)
        anchors, positives = z[:p], z[p:]
        loss = torch.nn.functional.cross_entropy(anchors @ positives.T / TEMPERATURE, labels)
        forwarded = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        backwarded = time.perf_counter()
        optimizer.step()
        end = time.perf_counter()
        losses.append(loss.item())
        if step >= arguments.warmup:
            for key, seconds in (("forward_loss", forwarded - start), ("backward", backwarded - forwarded),
                                 ("optimizer", end - backwarded), ("total", end - start)):
                phases[key].append(seconds)

    median_ms = {key: round(1e3 * statistics.median(values), 3) for key, values in phases.items()}
    print(json.dumps({
        "benchmark": f"BERT {arguments.preset} pair step ({p} pairs x {t} tokens, mean pooling, MNRL)",
        "framework": "pytorch", "torch_version": torch.__version__, "python": platform.python_version(),
        "transformers_version": __import__("transformers").__version__, "torch_threads": torch.get_num_threads(),
        "preset": arguments.preset, "pairs_per_step": p, "tokens": t,
        "parameters": sum(q.numel() for q in model.parameters()),
        "warmup_steps": arguments.warmup, "measured_steps": arguments.steps,
        "median_ms": median_ms, "pairs_per_second": round(p / (median_ms["total"] / 1e3), 1),
        "loss_first": round(losses[0], 5), "loss_last": round(losses[-1], 5),
    }))


if __name__ == "__main__":
    main()
