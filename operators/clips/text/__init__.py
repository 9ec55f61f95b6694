"""What the talk says: sentences from word timings, sentence embeddings, topic boundaries (TextTiling)."""
