"""The mfrec training pipeline: loaders, models, evaluation and the model artifact."""
