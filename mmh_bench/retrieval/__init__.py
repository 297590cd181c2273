"""Nearest-neighbour search as its own subsystem: FAISS indexes for any size, near-duplicate groups,
copy labels on a training set, the embeddings used for images and captions."""
