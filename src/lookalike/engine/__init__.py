"""The engine: an index folder, its one writer and its read-only searches (see ``engine.index``)."""
