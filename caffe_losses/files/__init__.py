"""Files the package reads and writes: H matrices (``hmatrix``), safe writing and reading
(``safety``), figures (``figures``), feature plots (``features``)."""
