"""One training process of the distributed tests: trains CONFIG into OUTPUT, then dumps its final trainable
weights and per-epoch losses to DUMP (.npz). ``--logical-cpus N`` splits the CPU into N devices first (for
MirroredStrategy on a CPU-only host).
Run: python tests/distributed/worker.py CONFIG OUTPUT DUMP [--logical-cpus N] [--resume]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

# isort: off
import tfmtl  # noqa: F401,E402  (Keras 2 for TFRS, before TensorFlow loads)
import tensorflow as tf  # noqa: E402

# isort: on


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("output")
    parser.add_argument("dump")
    parser.add_argument("--logical-cpus", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    if args.logical_cpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus)

    from tfmtl.config import Config
    from tfmtl.training import train

    result = train(Config.from_file(args.config), output=args.output, resume=args.resume, progress=False,
                   evaluate_test=False)
    weights = {f"w{i:03d}": v.numpy() for i, v in enumerate(result.model.trainable_variables)}
    losses = np.array([row["loss/total"] for row in result.history])
    np.savez(args.dump, losses=losses, **weights)


if __name__ == "__main__":
    main()
