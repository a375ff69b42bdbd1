"""Callbacks for the trainers users already have: Lightning and the Hugging Face Trainer.

Import the one you need (each needs its extra: ``pip install 'gradientflow[lightning]'`` or
``'gradientflow[transformers]'``)::

    from gradientflow.integrations.lightning import GradientflowCallback
    from gradientflow.integrations.transformers import GradientflowCallback

Nothing is imported here, so this package loads without either framework.
"""

__all__: list[str] = []
