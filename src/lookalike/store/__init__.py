"""Vector stores behind one contract (``store.base.VectorStore``, FAISS's): flat, IVF, HNSW,
Milvus, bag of words; ``store.factory`` picks one from a spec string."""
