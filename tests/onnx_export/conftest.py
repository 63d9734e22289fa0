from tests.onnx_fixtures import onnx_copy, onnx_dirs, splade_onnx_dir  # noqa: F401 - shared session fixtures
