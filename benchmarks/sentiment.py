"""Sentiment labelers: documents per second offline, and Amazon Comprehend calls per 1,000 documents.

Offline (one process; OMP/MKL threads set to 1 before imports so numbers are per core):
- ``vader``: `text_classifier.classify_texts` (kind vader) on N distinct sentences, no cache.
- ``trained``: TF-IDF words 1-2 + chars 2-5 + logistic regression, trained on 70 % of the UCI
  sentences (train time reported), then `trained.predict` on N sentences.
- ``hf_model``: a tiny random BERT (2 layers, hidden 32) through `hf_model.classify`: this measures
  the tokenise/batch/forward plumbing, not a real model (a base-size model is ~100x the compute).
Texts are the UCI sentences (../shared/data/real/text_sentiment) repeated with a counter appended
so every text is distinct; synthetic sentences when the folder is absent. Best of `--rounds`.

Comprehend: `comprehend.fill_missing_sentiment` with a real botocore client under `Stubber`, which
raises on any call it was not told to expect, so the counted calls are exact:
1,000 distinct short documents -> 40 calls; the same 1,000 again with the label cache -> 0 calls;
1,000 rows holding 100 distinct texts -> 4 calls.

    .venv/bin/python benchmarks/sentiment.py --docs 5000 --rounds 3
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
REAL_TEXT = REPO.parent / "shared" / "data" / "real" / "text_sentiment"


def _corpus() -> list[tuple[str, str]]:
    rows = []
    for path in sorted(REAL_TEXT.glob("*_labelled.txt")) if REAL_TEXT.is_dir() else []:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                text, score = line.rsplit("\t", 1)
                rows.append((text.strip(), "positive" if score.strip() == "1" else "negative"))
    if not rows:
        words = ["good", "bad", "great", "awful", "fine", "slow", "quick", "broken", "lovely"]
        rng = random.Random(0)
        rows = [(f"the phone is {rng.choice(words)} and {rng.choice(words)}", ("positive", "negative")[i % 2])
                for i in range(2000)]
    return rows


def _best(fn: Any, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def offline(n_docs: int, rounds: int) -> None:
    import torch

    torch.set_num_threads(1)
    from tasks.label.sentiment import hf_model, text_classifier, trained
    from tasks.spec_labelers import TextClassifierSettings, TrainedClassifierSettings

    rows = _corpus()
    random.Random(13).shuffle(rows)
    texts = [f"{rows[i % len(rows)][0]} ({i})" for i in range(n_docs)]
    vader = TextClassifierSettings()
    text_classifier.classify_texts(texts[:10], vader)  # lexicon load outside the timing
    secs = _best(lambda: text_classifier.classify_texts(texts, vader), rounds)
    print(f"vader      {n_docs} docs  {secs:7.3f} s  {n_docs / secs:9.0f} docs/s")

    cut = int(len(rows) * 0.7)
    t0 = time.perf_counter()
    model = trained.fit([t for t, _ in rows[:cut]], [s for _, s in rows[:cut]], TrainedClassifierSettings())
    train_s = time.perf_counter() - t0
    secs = _best(lambda: trained.predict(texts, model), rounds)
    print(f"trained    {n_docs} docs  {secs:7.3f} s  {n_docs / secs:9.0f} docs/s  (training on {cut} texts: {train_s:.2f} s)")

    sys.path.insert(0, str(REPO / "tests" / "tasks" / "label" / "sentiment"))
    from test_hf_model import save_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = save_tiny_model(Path(tmp), {0: "negative", 1: "neutral", 2: "positive"})
        settings = TextClassifierSettings(kind="hf_model", model_path=str(folder), batch_size=32)
        hf_model.classify(texts[:10], settings)  # load outside the timing
        secs = _best(lambda: hf_model.classify(texts, settings), rounds)
        print(f"hf_model   {n_docs} docs  {secs:7.3f} s  {n_docs / secs:9.0f} docs/s  (tiny 2-layer BERT: plumbing only)")


def comprehend_calls() -> None:
    import boto3
    import pandas as pd
    from botocore.stub import Stubber

    from tasks.label.sentiment import comprehend as cp
    from tasks.spec_labelers import AwsComprehendSettings

    settings = AwsComprehendSettings(rate_per_s=10_000)
    limiter = cp.RateLimiter(settings.rate_per_s, clock=lambda: 0.0, sleep=lambda s: None)

    def frame(texts: list[str]) -> pd.DataFrame:
        return pd.DataFrame({"utterance_id": [f"b/{i}" for i in range(len(texts))], "source": "b",
                             "language": "en", "transcript": texts, "sentiment": None})

    def run(texts: list[str], cache: Any, expected_calls: int) -> int:
        client = boto3.client("comprehend", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
        counted = [0]
        distinct = len(dict.fromkeys(texts))
        with Stubber(client) as stub:
            for call in range(expected_calls):
                size = min(25, distinct - 25 * call)
                stub.add_response("batch_detect_sentiment", {"ResultList": [
                    {"Index": i, "Sentiment": "NEUTRAL",
                     "SentimentScore": {"Positive": 0.1, "Negative": 0.1, "Neutral": 0.7, "Mixed": 0.1}}
                    for i in range(size)], "ErrorList": []})
            client.meta.events.register("before-parameter-build.comprehend.BatchDetectSentiment",
                                        lambda **kw: counted.__setitem__(0, counted[0] + 1))
            result = cp.fill_missing_sentiment(frame(texts), settings, client, cache, limiter=limiter,
                                               log=lambda *a: None)
            stub.assert_no_pending_responses()
        assert len(result.items) == len(texts), "every document labelled"
        return counted[0]

    with tempfile.TemporaryDirectory() as tmp:
        distinct = [f"short review number {i}: it was fine" for i in range(1000)]
        first = run(distinct, cp.make_cache(tmp, settings), 40)
        again = run(distinct, cp.LabelCache(tmp, cp.LABELER_NAME, cp.cache_settings(settings)), 0)
        print(f"comprehend 1,000 distinct short docs: {first} calls; same docs again (cache): {again} calls")
    with tempfile.TemporaryDirectory() as tmp:
        repeated = [f"short review number {i % 100}" for i in range(1000)]
        calls = run(repeated, cp.make_cache(tmp, settings), 4)
        print(f"comprehend 1,000 rows, 100 distinct texts: {calls} calls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    comprehend_calls()
    offline(args.docs, args.rounds)


if __name__ == "__main__":
    main()
