"""THE wire contract: signature names, input and output keys. Imported by export and by the client."""

from __future__ import annotations

# A standalone text encoder export: strings in, embeddings out.
TEXT_EMBEDDING = "embed_text"
TEXT_EMBEDDING_INPUT = "text"
TEXT_EMBEDDING_OUTPUT = "text_embedding"
