"""The domain: event-sourced aggregates, the batched writer, price books and projections."""
