"""One library's in-memory side and the queries it answers: its index and filter data, validated
inputs, metadata and filters, retrieval options, the result cache and the rendering of hits."""
