"""sdfusion: structured data fusion with coupled tensor decompositions."""
