"""SkinLens: skin analysis on the Hugging Face stack.

Everything user-facing (``app.py``, ``train.py``, ``dataset_scripts/``) is thin
over this package. Heavy imports (torch, transformers, captum, gradio) happen in
the modules that need them, never here.
"""

__version__ = "0.1.0"
