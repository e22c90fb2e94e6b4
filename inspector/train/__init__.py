"""Site adapters from reviews: dataset snapshots, LoRA training, holdout evaluation, registry.

Importing this package loads neither torch nor the model; training and evaluation do.
"""
