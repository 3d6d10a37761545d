//! Query-side reads of the store: summaries, scans, trace lookups with statistics, the live view.
