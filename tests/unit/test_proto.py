from dmsc.proto import generate


def test_committed_generated_code_matches_the_proto():
    stale = generate.stale_modules()
    assert stale == [], f"regenerate with: python -m dmsc.proto.generate (stale: {stale})"


def test_generated_modules_import_under_the_package():
    from dmsc.proto import dmsc_pb2, dmsc_pb2_grpc

    assert dmsc_pb2.DESCRIPTOR.package == "dmsc.v1"
    assert hasattr(dmsc_pb2_grpc, "PrefixAuthenticationStub")
