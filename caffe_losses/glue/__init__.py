"""The Caffe side of a layer: the layer base (``base``), ``param_str`` schemas (``params``),
Caffe's fillers (``fillers``), gradient checking and test nets (``testing``), net text for
tests and the bench (``netbuild``)."""
