"""Shared fixtures: small ground-truth scenes rendered once per session."""
import gc

import pytest

from egox_model.scene import SceneConfig, render_scene


def pytest_collection_finish(session):
    """Move what collection loaded (torch, diffusers, rclpy, ... and the test modules: live
    for the whole run) out of the cyclic collector's reach: every full gc.collect() (the Wan
    text encoder's unload, the trainer's, imageio's on closing a video) scanned that heap,
    ~0.35 s each. Objects made later are collected as before."""
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session")
def small_scene():
    """9 frames, exo 224x392, ego 224x224 (the default sizes halved)."""
    return render_scene(SceneConfig(seed=0, num_frames=9, exo_size=(224, 392),
                                    ego_size=(224, 224)))


@pytest.fixture(scope="session")
def default_scene():
    """5 frames at the default sizes (exo 448x784, ego 448x448)."""
    return render_scene(SceneConfig(seed=0, num_frames=5))


def _candidates(spec) -> list:
    """Valid-looking values other than the default, most likely first."""
    if spec.type is bool:
        return [not spec.default]
    if spec.choices:
        return [c for c in spec.choices if c != spec.default]
    if spec.type is int:
        return [spec.default + 1, spec.default - 1, spec.default + 2]
    if spec.type is float:
        return [spec.default * 0.5 + 0.25, spec.default + 0.5, spec.default * 0.9]
    if spec.type in (list, tuple):
        if not spec.default:                    # an empty list: one item of the item type
            return [[{str: "some text", int: int(spec.low or 1), float: 0.5,
                      bool: True}[spec.item_type]]]
        if spec.item_type is str:               # a non-empty list of strings: drop one
            return [list(spec.default[:-1]) or ["some text"]]
        first = spec.default[0]
        items = [0.2, 0.8] if len(spec.default) == 2 else [first + 0.25] + list(spec.default[1:])
        return [items]
    if spec.name.endswith("url"):
        return ["https://gpu-host.example:8443/egox"]
    if spec.name == "clip_quality_warn":            # an expression over the quality keys
        return ["prior_psnr_db >= 20 and prior_coverage >= 0.5"]
    return ["cuda:1" if spec.name.endswith("device") else "some text"]


@pytest.fixture(scope="session")
def changed_values():
    """changed_values(cls, base) -> {dotted name: a valid non-default value} for every
    setting of the tree `cls` (each valid on its own, on top of the defaults and the
    dotted-name values `base`): a mapper that drops, renames or mistypes any setting fails
    a round trip with these. Settings with a single allowed value are left out."""
    from egox_model.config import from_flat, settings_of
    from egox_model.errors import ConfigError

    def changed(cls, base: dict | None = None) -> dict:
        values = {}
        for spec in settings_of(cls):
            if spec.choices and len(spec.choices) == 1:
                continue                          # nothing else to choose
            for value in _candidates(spec):
                if base and base.get(spec.name) == value:
                    continue
                try:
                    from_flat(cls, {**(base or {}), spec.name: value})
                except ConfigError:
                    continue
                values[spec.name] = value
                break
            else:
                raise AssertionError(f"no valid non-default value found for {spec.name}")
        return values

    return changed
