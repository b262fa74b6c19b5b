"""`egox convert` of a bag from a plain RGB camera (no exo/depth): depth_source 'estimate'
with a tiny Depth Pro directory gives ego frames at every exo stamp."""
import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from typer.testing import CliRunner

from egox_model.geometry.pose import c2w_to_pose
from egox_model.scene import SceneConfig, render_scene
from egox_ros.image_conversion import numpy_to_image
from egox_ros.messages import RosbagsFactory

TS = get_typestore(Stores.ROS2_KILTED)


def _write_rgb_bag(path, scene):
    f = RosbagsFactory(TS)
    pose_t, point_t = TS.types["geometry_msgs/msg/PoseStamped"], TS.types["geometry_msgs/msg/Pose"]
    vec_t, quat_t = TS.types["geometry_msgs/msg/Point"], TS.types["geometry_msgs/msg/Quaternion"]

    def pose(c2w, header):
        p, q = c2w_to_pose(c2w)
        return pose_t(header=header, pose=point_t(position=vec_t(*map(float, p)),
                                                  orientation=quat_t(*map(float, q))))

    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {t: writer.add_connection(t, m, typestore=TS) for t, m in [
            ("/exo/image_raw", "sensor_msgs/msg/Image"),
            ("/exo/camera_info", "sensor_msgs/msg/CameraInfo"),
            ("/ego/pose", "geometry_msgs/msg/PoseStamped")]}
        for i, stamp in enumerate(int(s) for s in scene.stamps_ns):
            h = f.header(stamp, "exo")
            msgs = {"/exo/camera_info": f.camera_info(scene.exo_K, h),
                    "/exo/image_raw": numpy_to_image(scene.exo_rgb[i], "rgb8", h,
                                                     msg_type=TS.types["sensor_msgs/msg/Image"]),
                    "/ego/pose": pose(scene.ego_c2w[i], h)}
            for topic, msg in msgs.items():
                writer.write(conns[topic], stamp, TS.serialize_cdr(msg, msg.__msgtype__))


def test_convert_estimates_depth_of_an_rgb_bag(tmp_path, tiny_models):
    from egox_ros.cli import app

    scene = render_scene(SceneConfig(seed=6, num_frames=4, exo_size=(48, 80),
                                     ego_size=(32, 32)))
    _write_rgb_bag(tmp_path / "exo", scene)
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
