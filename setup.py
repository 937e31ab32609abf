"""Packaging of the DMSC testbed; tool settings live in pyproject.toml."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="dmsc-testbed",
    version="0.1.0",
    description="Network-emulation testbed for DMSC (draft-li-dmsc-architecture) on Mininet",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.11",
    packages=find_packages(include=["dmsc", "dmsc.*"]),
    package_data={"dmsc.proto": ["*.proto"], "dmsc.vm.guest": ["*.sh", "motd", "fstab"]},
    install_requires=[
        # The committed gencode was made by protoc 7.35.1 (grpcio-tools 1.85.1) and its
        # runtime check refuses an older protobuf; a new major may change the gencode ABI.
        "protobuf>=7.35.1,<8",
        "grpcio>=1.85",
        # Ed25519 keys and signatures for prefix claims and SPA attestations.
        "cryptography>=42",
        "networkx>=3.2",
        # Real-world networks (topohub:topozoo/Geant2012, ...). Exact pin: the network is part
        # of an experiment's identity, and another topohub release may change its nodes, links
        # or lengths, so results would no longer be reproducible from the experiment file.
        "topohub==1.5.1",
        "PyYAML>=6.0",
        "pandas>=2.2",
        "matplotlib>=3.8",
        # Dissecting and crafting DMSC packets in tools and tests (never on the forwarding path).
        "scapy>=2.5",
        # The Scheduling Center is an os-ken application; the forwarders' OpenFlow codec is
        # built on its match/action pieces. 4.x: the maintained fork of Ryu.
        "os-ken>=4.0,<5",
    ],
    extras_require={
        # grpcio-tools: exact pin, so the test that regenerates the committed gencode is
        # byte-for-byte reproducible.
        "test": ["pytest>=8", "hypothesis>=6.100", "grpcio-tools==1.85.1"],
        "dev": ["ruff>=0.6"],
    },
    entry_points={"console_scripts": ["dmsc = dmsc.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: System :: Networking",
        "Intended Audience :: Science/Research",
    ],
)
