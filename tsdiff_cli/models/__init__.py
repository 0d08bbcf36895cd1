"""Pure torch modules, each with an architecture-only config dataclass."""
