"""A short, real training loop over a release's classifier stage, to show the contract end to end.

Reads 5 s windows through `ClassifierDataset` with the class-weighted sampler (so the loss is
unweighted: the sampler already corrects the imbalance), computes log-mels with SpecAugment, and
trains a tiny CNN + GRU with two heads: sentiment (3 classes, non-speech windows ignored) and
speech presence. Prints the loss of every step.

    .venv/bin/python examples/train_classifier.py out/voicetone-demo --steps 20
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch.utils.data import DataLoader

from manifests.dataset import ClassifierDataset, LogMel, collate_pad, weighted_sampler


class TinyClassifier(torch.nn.Module):
    """Log-mel (B, 80, T) -> sentiment logits (B, 3) and speech-presence logit (B,)."""

    def __init__(self, n_mels: int = 80, hidden: int = 64) -> None:
        super().__init__()
        self.features = LogMel(n_mels=n_mels, specaugment=True)
        self.conv = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
        )
        self.gru = torch.nn.GRU(32 * ((n_mels + 3) // 4), hidden, batch_first=True)
        self.sentiment = torch.nn.Linear(hidden, 3)
        self.speech = torch.nn.Linear(hidden, 1)

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(waveform)  # (B, mels, T)
        feats = (feats - feats.mean(dim=(1, 2), keepdim=True)) / (feats.std(dim=(1, 2), keepdim=True) + 1e-5)
        x = self.conv(feats.unsqueeze(1))  # (B, C, mels/4, T/4)
        x = x.flatten(1, 2).transpose(1, 2)  # (B, T/4, C * mels/4)
        _, h = self.gru(x)
        return self.sentiment(h[-1]), self.speech(h[-1]).squeeze(-1)


def train(release: str, steps: int = 10, batch_size: int = 8, workers: int = 0, lr: float = 1e-3,
          seed: int = 0) -> list[float]:
    """Train for `steps` batches; returns the loss of each step."""
    torch.manual_seed(seed)
    data = ClassifierDataset(release, split="train")
    sampler = weighted_sampler(data, num_samples=steps * batch_size, generator=torch.Generator().manual_seed(seed))
    loader = DataLoader(data, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_pad)
    model = TinyClassifier()
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sentiment_loss = torch.nn.CrossEntropyLoss(ignore_index=-1)  # unweighted: the sampler weights
    speech_loss = torch.nn.BCEWithLogitsLoss()
    losses = []
    for step, batch in enumerate(loader, start=1):
        logits, speech_logit = model(batch["waveform"])
        loss = speech_loss(speech_logit, batch["speech_present"].float())
        if bool((batch["target"] >= 0).any()):
            loss = loss + sentiment_loss(logits, batch["target"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        print(f"step {step}: loss {losses[-1]:.4f} (batch {len(batch['target'])}, "
              f"{int(batch['speech_present'].sum())} speech windows)", flush=True)
        if step >= steps:
            break
    return losses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("release", help="release folder, or output folder with LATEST (local or s3://)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args(argv)
    losses = train(args.release, args.steps, args.batch_size, args.workers, args.lr)
    print(f"done: {len(losses)} steps, first loss {losses[0]:.4f}, last loss {losses[-1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
