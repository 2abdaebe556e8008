"""Text encoder throughput: sentences per second at batch 64, sequence lengths 32 and 64, on real titles.

tfmtl's `TextEncoder.embed` (minilm-l6, reference normalisation in-graph) runs side by side with the stock
keras-hub path on the same weights (BertTokenizer with its own case folding + MultiSegmentPacker + BertBackbone
+ the same mean pooling, in one tf.function, every batch padded to the sequence length). tfmtl cuts each batch to
its longest text. Each figure is the median of --repeats timed passes over the
ML-100K titles after a warm-up pass; ratios are tfmtl / keras-hub.

Run: .venv/bin/python benchmarks/text_encoder_speed.py [--repeats 3] [--lengths 32 64]
Writes benchmarks/results/text_encoder_speed.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

import tfmtl
from tfmtl.data import load_dataset
from tfmtl.encoders import TextEncoder, minilm_folder

RESULTS = Path(__file__).parent / "results"
BATCH = 64


def stock_keras_hub_embedder(sequence_length: int):  # type: ignore[no-untyped-def]
    import keras_hub  # the peer: stock keras-hub, as a user would write it

    folder = str(minilm_folder())
    tokenizer = keras_hub.models.BertTokenizer.from_preset(folder)
    packer = keras_hub.layers.MultiSegmentPacker(sequence_length=sequence_length, start_value=tokenizer.cls_token_id,
                                                 end_value=tokenizer.sep_token_id, pad_value=tokenizer.pad_token_id)
    backbone = keras_hub.models.BertBackbone.from_preset(folder)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def embed(texts: tf.Tensor) -> tf.Tensor:
        token_ids, segment_ids = packer(tokenizer(texts))
        mask = tf.not_equal(token_ids, tokenizer.pad_token_id)
        inputs = {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": mask}
        sequence = backbone(inputs)["sequence_output"]
        weights = tf.cast(mask, tf.float32)[:, :, None]
        pooled = tf.reduce_sum(sequence * weights, 1) / tf.maximum(tf.reduce_sum(weights, 1), 1e-9)
        return tf.math.l2_normalize(pooled, -1)

    return lambda texts: np.concatenate([embed(tf.constant(texts[i:i + BATCH])).numpy()
                                         for i in range(0, len(texts), BATCH)])


def throughput(fn, texts: list[str], repeats: int) -> tuple[float, list[float]]:  # type: ignore[no-untyped-def]
    fn(texts[:BATCH])  # warm-up: tracing and first-call allocation are not throughput
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(texts)
        rates.append(len(texts) / (time.perf_counter() - start))
    return statistics.median(rates), rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 64])
    args = parser.parse_args()

    titles = load_dataset("ml-100k").items["title"].tolist()
    rows = []
    for length in args.lengths:
        ours = TextEncoder.from_preset("minilm-l6", sequence_length=length)
        peer = stock_keras_hub_embedder(length)
        ours_rate, ours_runs = throughput(lambda t, e=ours: e.embed(t, batch_size=BATCH, progress=False), titles,
                                          args.repeats)
        peer_rate, peer_runs = throughput(peer, titles, args.repeats)
        cosine = float(np.median((ours.embed(titles[:256]) * peer(titles[:256])).sum(1)))
        rows.append({"sequence_length": length, "batch": BATCH, "texts": len(titles),
                     "tfmtl_sentences_per_s": round(ours_rate, 1), "keras_hub_sentences_per_s": round(peer_rate, 1),
                     "ratio_tfmtl_over_keras_hub": round(ours_rate / peer_rate, 3),
                     "tfmtl_runs": [round(r, 1) for r in ours_runs], "keras_hub_runs": [round(r, 1) for r in peer_runs],
                     "median_cosine_tfmtl_vs_keras_hub": round(cosine, 6)})
        print(json.dumps(rows[-1]))
    report = {"benchmark": "text_encoder_speed", "preset": "minilm-l6", "repeats": args.repeats, "rows": rows,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "tensorflow": tf.__version__,
                          "tfmtl": tfmtl.__version__}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "text_encoder_speed.json").write_text(json.dumps(report, indent=2))
    lines = ["# Text encoder throughput (minilm-l6, batch 64, ML-100K titles, CPU)", "",
             f"Median of {args.repeats} passes over {len(titles)} titles on {os.cpu_count()} CPUs. "
             "Peer: stock keras-hub (its own case folding, same weights and pooling), same process. "
             "tfmtl sorts texts by length and cuts each batch to its longest text (padding is masked out, so the "
             "vectors are the same); the peer pads every batch to the sequence length, as keras-hub's packer does. "
             "Short titles are where that matters most.", "",
             "| sequence length | tfmtl sentences/s | keras-hub sentences/s | ratio | median cosine |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['sequence_length']} | {r['tfmtl_sentences_per_s']} | {r['keras_hub_sentences_per_s']} | "
              f"{r['ratio_tfmtl_over_keras_hub']} | {r['median_cosine_tfmtl_vs_keras_hub']} |" for r in rows]
    (RESULTS / "text_encoder_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
