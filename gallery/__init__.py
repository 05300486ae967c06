"""Search side of the toolkit (no torch): gallery store, FAISS index, open-set decision."""
