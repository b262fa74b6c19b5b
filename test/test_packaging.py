"""Packaging checks: package.xml declares what the code imports; requirements split; setup.py.

Every .py under egox_ros/, launch/ and egox_model/ (all installed by this package) and test/ is
parsed with `ast`; every import, top level or inside a function, counts.
"""
from __future__ import annotations

import ast
import re
import runpy
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import setuptools

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "egox_ros"

#: ROS packages by name (their Python module has the same name unless MODULE_TO_ROS_PACKAGE
#: says otherwise), beside the name patterns in `is_ros_module`.
KNOWN_ROS = {"rclpy", "launch", "launch_ros", "launch_testing", "launch_testing_ros",
             "ament_index_python", "message_filters", "cv_bridge", "image_geometry",
             "rosbag2_py", "rosidl_runtime_py", "rpyutils", "ros2cli", "tf_transformations",
             "sensor_msgs_py", "ament_copyright", "ament_flake8", "ament_pep257"}
MODULE_TO_ROS_PACKAGE = {"tf2_ros": "tf2_ros_py"}
#: Python modules that have a rosdep key (rosdistro's rosdep/python.yaml) usable on the ROS 2
#: platforms, and that key. Modules without one (torch, open3d, diffusers, rosbags, ...) are
#: pip-only: requirements.txt.
ROSDEP_KEYS = {"numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml",
               "typer": "python3-typer", "tqdm": "python3-tqdm", "imageio": "python3-imageio",
               "transforms3d": "python3-transforms3d", "psutil": "python3-psutil",
               "pytest": "python3-pytest"}
RUNTIME_DIRS = ("egox_ros", "launch", "egox_model")
RUN_TAGS = ("depend", "exec_depend")
TEST_TAGS = RUN_TAGS + ("test_depend",)


def is_ros_module(name: str) -> bool:
    """True for a top-level module that a ROS 2 package provides (ament/ROS namespace)."""
    return (name in KNOWN_ROS or name in MODULE_TO_ROS_PACKAGE
            or name.endswith(("_msgs", "_srvs", "_interfaces"))
            or name.startswith(("rcl", "ament_", "tf2", "rosidl_", "rmw", "launch_",
                                "rosbag2_")))


def ros_package(module: str) -> str:
    return MODULE_TO_ROS_PACKAGE.get(module, module)


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every absolute import in the file (nested ones too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def imports_under(*dirs: str) -> dict[str, set[str]]:
    """Top-level module -> the files (relative) that import it."""
    found: dict[str, set[str]] = {}
    for d in dirs:
        for path in sorted((ROOT / d).rglob("*.py")):
            for name in imported_modules(path):
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def declared(*tags: str) -> set[str]:
    root = ET.parse(ROOT / "package.xml").getroot()
    return {el.text.strip() for tag in tags for el in root.findall(tag) if el.text}


def requirement_lines(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [s for s in (line.split("#")[0].strip() for line in lines) if s]


def requirement_name(line: str) -> str:
    return re.split(r"[\[=<>!~; ]", line, maxsplit=1)[0].lower().replace("_", "-")


# -- package.xml -------------------------------------------------------------------------------

def test_scan_finds_the_ros_imports():
    """Guards the scanner itself: nested and `from` imports of ROS packages are seen."""
    runtime = imports_under(*RUNTIME_DIRS)
    for module in ("rclpy", "sensor_msgs", "launch", "launch_ros", "ament_index_python"):
        assert module in runtime, module
    assert not is_ros_module("rosbags") and not is_ros_module("mcap_ros2")
    assert not is_ros_module("rich") and is_ros_module("rcl_interfaces")


def test_every_imported_ros_package_is_an_exec_depend():
    runtime = imports_under(*RUNTIME_DIRS)
    have = declared(*RUN_TAGS)
    missing = {ros_package(m): sorted(files) for m, files in runtime.items()
               if is_ros_module(m) and ros_package(m) not in have}
    assert not missing, f"add <exec_depend> to package.xml for (package: importers) {missing}"


def test_ros_packages_imported_by_tests_are_declared():
    tests = imports_under("test")
    have = declared(*TEST_TAGS)
    missing = {ros_package(m): sorted(files) for m, files in tests.items()
               if is_ros_module(m) and ros_package(m) not in have}
    assert not missing, f"add <test_depend> to package.xml for (package: importers) {missing}"


def test_python_modules_with_rosdep_keys_are_declared():
    runtime, tests = imports_under(*RUNTIME_DIRS), imports_under("test")
    missing = {ROSDEP_KEYS[m] for m in runtime if m in ROSDEP_KEYS} - declared(*RUN_TAGS)
    missing |= {ROSDEP_KEYS[m] for m in tests if m in ROSDEP_KEYS} - declared(*TEST_TAGS)
    assert not missing, f"add these rosdep keys to package.xml: {sorted(missing)}"


def test_declared_ros_packages_are_imported():
    """No stale ROS dependency: each declared ROS package is imported somewhere."""
    imported = {ros_package(m) for m in imports_under(*RUNTIME_DIRS, "test")}
    stale = {p for p in declared(*TEST_TAGS) if is_ros_module(p) and p not in imported}
    assert not stale, f"package.xml declares ROS packages nothing imports: {sorted(stale)}"


def test_the_core_never_imports_ros():
    ros = {m: sorted(f) for m, f in imports_under("egox_model").items() if is_ros_module(m)}
    assert not ros, f"egox_model must stay ROS-free: {ros}"


# -- requirements ------------------------------------------------------------------------------

def test_requirements_txt_has_no_ros_wheels_and_is_pinned():
    lines = requirement_lines("requirements.txt")
    assert lines
    ros = [line for line in lines if requirement_name(line).startswith("ros-")]
    assert not ros, f"ROS wheels belong in requirements-ros.txt: {ros}"
    loose = [line for line in lines if "==" not in line]
    assert not loose, f"pin exactly (==): {loose}"


def test_requirements_ros_pins_every_ros_wheel_exactly():
    lines = requirement_lines("requirements-ros.txt")
    assert lines
    bad = [line for line in lines
           if not re.fullmatch(r"ros-[a-z0-9-]+(\[[a-z0-9_,-]+\])?==[0-9][0-9A-Za-z.+-]*", line)]
    assert not bad, f"requirements-ros.txt holds only ros-* wheels pinned with ==: {bad}"
    names = [requirement_name(line) for line in lines]
    assert len(names) == len(set(names)), "a wheel is listed twice"
    assert not set(names) & {requirement_name(x) for x in requirement_lines("requirements.txt")}


#: ROS packages egox_ros uses only where a ROS 2 workspace provides them (no wheel exists):
#: the code says so at start-up instead of importing them unconditionally.
WORKSPACE_ONLY = {"tf2_ros_py"}     # egox_ros/tf2_lookup.py: camera poses from live TF


def test_requirements_ros_covers_what_the_nodes_import():
    """The venv (no ROS) runs egox_ros/: each ROS package it imports has its wheel pinned."""
    pinned = {requirement_name(line) for line in requirement_lines("requirements-ros.txt")}
    needed = {"ros-" + ros_package(m).replace("_", "-")
              for m in imports_under("egox_ros")
              if is_ros_module(m) and ros_package(m) not in WORKSPACE_ONLY}
    assert needed <= pinned, f"pin in requirements-ros.txt: {sorted(needed - pinned)}"


def test_install_script_and_makefile_use_both_requirement_files():
    install = (ROOT / "scripts" / "install.sh").read_text()
    stamp = next(line for line in (ROOT / "Makefile").read_text().splitlines()
                 if line.startswith("$(STAMP):"))
    for name in ("requirements.txt", "requirements-ros.txt", "constraints.txt"):
        assert f"-r {name}" in install or f"-c {name}" in install, name
        assert name in stamp, name


# -- setup.py ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def setup_kwargs():
    captured: dict = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(setuptools, "setup", lambda **kw: captured.update(kw))
        mp.chdir(ROOT)
        runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    return captured


def test_setup_matches_package_xml(setup_kwargs):
    root = ET.parse(ROOT / "package.xml").getroot()
    assert setup_kwargs["name"] == root.findtext("name") == PACKAGE
    assert setup_kwargs["version"] == root.findtext("version")
    assert root.find("export/build_type").text == "ament_python"


def test_data_files_install_marker_launch_and_config(setup_kwargs):
    data = {dest: sorted(files) for dest, files in setup_kwargs["data_files"]}
    assert data["share/ament_index/resource_index/packages"] == [f"resource/{PACKAGE}"]
    assert (ROOT / "resource" / PACKAGE).is_file()
    assert "package.xml" in data[f"share/{PACKAGE}"]
    for sub, pattern in (("launch", "*.launch.py"), ("config", "*.yaml")):
        on_disk = sorted(str(p.relative_to(ROOT)) for p in (ROOT / sub).glob(pattern))
        assert on_disk and data[f"share/{PACKAGE}/{sub}"] == on_disk, sub


def test_executables_named_by_launch_file_and_readme_exist(setup_kwargs):
    scripts = {}
    for spec in setup_kwargs["entry_points"]["console_scripts"]:
        name, target = (s.strip() for s in spec.split("="))
        scripts[name] = target
    for name, target in scripts.items():             # each points at an existing function
        module, func = target.split(":")
        tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
        assert func in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, name
    launch = (ROOT / "launch" / "egox.launch.py").read_text()
    wanted = set(re.findall(r'executable="([^"]+)"', launch))
    assert wanted and wanted <= scripts.keys(), wanted - scripts.keys()
    readme = (ROOT / "README.md").read_text()
    run = set(re.findall(rf"ros2 run {PACKAGE} (\w+)", readme))
    assert run <= scripts.keys(), run - scripts.keys()
    for launch_file in re.findall(rf"ros2 launch {PACKAGE} (\S+)", readme):
        assert (ROOT / "launch" / launch_file).is_file(), launch_file
