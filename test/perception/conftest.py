"""Tiny random-weight perception models saved with save_pretrained, loaded back by the
users' code path (nothing is downloaded)."""
import pytest

from egox_model.perception.tiny import save_depth_model


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """{name: directory} of tiny saved models: da_relative, da_metric, depth_pro."""
    root = tmp_path_factory.mktemp("perception_models")
    return {key: save_depth_model(root / key, f"tiny-{name}")
            for key, name in (("da_relative", "da-relative"), ("da_metric", "da-metric"),
                              ("depth_pro", "depth-pro"))}
