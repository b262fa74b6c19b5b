"""Declarative configuration: components declare their settings once (`setting`, `group`);
ROS parameters, parameter files and CLI flags are all generated from those declarations."""
from egox_model.config.params_file import (format_params_file, format_params_table,
                                           read_params_file)
from egox_model.config.setting import Setting, check_device, check_settings, group, setting
from egox_model.config.tree import from_flat, group_descriptions, settings_of, to_flat

__all__ = ["Setting", "check_device", "check_settings", "format_params_file",
           "format_params_table", "from_flat", "group", "group_descriptions",
           "read_params_file", "setting", "settings_of", "to_flat"]
