"""Stage 3, crop -> vector: the timm backbone, the embedding and classifier heads, learned
whitening, the checkpoint that rebuilds a model on its own, and the batched ``Embedder``."""
