"""`egox convert` of a bag from a plain RGB camera (no exo/depth): depth_source 'estimate'
with a tiny Depth Pro directory gives ego frames at every exo stamp."""
import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore
from typer.testing import CliRunner

from exo_bags import write_exo_bag  # noqa: I100
from egox_model.geometry.pose import c2w_to_pose
from egox_model.scene import SceneConfig, render_scene

TS = get_typestore(Stores.ROS2_KILTED)


def test_convert_estimates_depth_of_an_rgb_bag(tmp_path, tiny_models):
    from egox_ros.cli import app

    scene = render_scene(SceneConfig(seed=6, num_frames=4, exo_size=(48, 80),
                                     ego_size=(32, 32)))
    write_exo_bag(tmp_path / "exo", scene, depth=False)
    K = scene.ego_K
    flags = {"depth_source": "estimate", "perception.depth_model": str(tiny_models["depth_pro"]),
             "clip_length": 4, "clip_stride": 4, "exo_width": 0, "exo_height": 0,
             "ego_width": K.width, "ego_height": K.height, "ego_fx": K.fx, "ego_fy": K.fy,
             "ego_cx": K.cx, "ego_cy": K.cy,
             "exo_pose": str([float(v) for v in np.concatenate(c2w_to_pose(scene.exo_c2w[0]))])}
    args = ["convert", str(tmp_path / "exo"), str(tmp_path / "ego"), "--no-progress"]
    for name, value in flags.items():
        args += [f"--{name}", str(value)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with AnyReader([tmp_path / "ego"], default_typestore=TS) as reader:
        stamps = sorted(m[1] for m in reader.messages()
                        if m[0].topic == "/egox/ego/image")
    assert stamps == [int(s) for s in scene.stamps_ns]
