//! Pipelines turned into nodes and edges, with start and stop order.
