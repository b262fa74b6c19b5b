"""The tiny random-weight Wan directory and two synthetic smoke clips, written once."""
import pytest

from egox_model.data.synthetic import write_synthetic_dataset
from egox_model.generator.wan.tiny import save_tiny_model_dir
from egox_model.train.smoke import SMOKE_SCENE


@pytest.fixture(scope="session")
def setup(tmp_path_factory):
    """(root, model_dir, data_root): train clips synthetic_00000 / 00001, val 00002."""
    root = tmp_path_factory.mktemp("train")
    model_dir = save_tiny_model_dir(root / "model")
    write_synthetic_dataset(root / "data", [0, 1], val_seeds=[2], config=SMOKE_SCENE)
    return root, model_dir, root / "data"
