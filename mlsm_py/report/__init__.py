"""`mlsm report`: one self-contained HTML file per project (plots inline as SVG)."""
