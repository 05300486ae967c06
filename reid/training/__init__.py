"""Fine-tuning: one plain training loop, the losses (classifier + metric learning) and the
paper's augmentations."""
