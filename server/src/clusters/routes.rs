//! HTTP routes for clusters: Start, progress as server-sent events, extend, remove.
