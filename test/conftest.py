"""Shared fixtures: small ground-truth scenes rendered once per session."""
import pytest

from egox_model.scene import SceneConfig, render_scene


@pytest.fixture(scope="session")
def small_scene():
    """9 frames, exo 224x392, ego 224x224 (the default sizes halved)."""
    return render_scene(SceneConfig(seed=0, num_frames=9, exo_size=(224, 392),
                                    ego_size=(224, 224)))


@pytest.fixture(scope="session")
def default_scene():
    """5 frames at the default sizes (exo 448x784, ego 448x448)."""
    return render_scene(SceneConfig(seed=0, num_frames=5))
