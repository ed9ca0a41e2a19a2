"""The HTTP edge: auth, validation, routing, the attempt loop, streaming relay, events."""
