# SPDX-License-Identifier: GPL-3.0-or-later
"""A stand-in for ``bpy.types.UILayout`` that checks every call against Blender's own RNA description of it.

The bpy module runs in background mode, where Blender builds no UI: a panel's ``draw()`` never runs, so a typo in a
property name, an operator id, an icon or a keyword argument would only show up for a user (as a console error and a
half-drawn panel). ``RecordingLayout`` lets the tests call ``Panel.draw`` / ``UIList.draw_item`` for real:

- its methods are exactly ``UILayout.bl_rna.functions`` (an unknown method raises ``AttributeError``), their keyword
  arguments are checked against the function's RNA parameters (names, required ones, enum values such as icons);
- ``prop(data, "name")`` needs ``name`` to be a property of ``data``; ``operator("x.y")`` needs a registered operator
  and returns its properties, whose assignments are checked too; ``template_list`` needs a registered ``UIList`` and
  then draws every row it shows with that list's ``filter_items`` and ``draw_item``;
- attributes (``use_property_split``, ``alignment``, ...) must be ``UILayout`` properties with valid values.

Every call is recorded as ``(method, args, kwargs)`` in ``calls``, sub-layouts included, so tests can assert what a
user sees (a progress bar with its text, an error box).
"""

from __future__ import annotations

from types import SimpleNamespace

import bpy

_RNA = bpy.types.UILayout.bl_rna
# Functions that return a sub-layout (their RNA output parameter is a UILayout).
_LAYOUT_FUNCTIONS = {name for name, function in _RNA.functions.items()
                     if any(p.is_output and p.identifier == "layout" for p in function.parameters)}


class LayoutError(AssertionError):
    """A draw call Blender would reject (or draw wrongly): wrong property, operator, icon or argument."""


def _check_enum(owner: str, parameter, value) -> None:
    items = parameter.enum_items.keys()
    values = value if parameter.is_enum_flag and isinstance(value, (set, frozenset)) else {value}
    for item in values:
        if item not in items:
            raise LayoutError(f"{owner}: {parameter.identifier}={item!r} is not one of Blender's values "
                              f"({len(items)} of them, e.g. {', '.join(list(items)[:5])})")


def _rna_properties(data):
    rna = getattr(data, "bl_rna", None)
    if rna is None:
        raise LayoutError(f"{data!r} is not a Blender data block or property group")
    return rna.properties


def _check_prop(data, name: str, where: str):
    properties = _rna_properties(data)
    if name.startswith('["'):  # an ID property: data["name"]
        if name[2:-2] not in data.keys():
            raise LayoutError(f"{where}: {data!r} has no custom property {name}")
        return None
    if name not in properties:
        raise LayoutError(f"{where}: {type(data).__name__} has no property {name!r}")
    return properties[name]


def operator_rna(idname: str):
    module, _, name = idname.partition(".")
    try:
        return getattr(getattr(bpy.ops, module), name).get_rna_type()
    except (AttributeError, KeyError):
        raise LayoutError(f"no operator {idname!r} is registered") from None


class OperatorProperties:
    """What ``layout.operator()`` returns: assigning a property checks it exists (and its enum value)."""

    def __init__(self, idname: str) -> None:
        object.__setattr__(self, "_idname", idname)
        object.__setattr__(self, "_rna", operator_rna(idname))
        object.__setattr__(self, "values", {})

    def __setattr__(self, name, value):
        properties = self._rna.properties
        if name not in properties or name == "rna_type":
            raise LayoutError(f"operator {self._idname!r} has no property {name!r}")
        if properties[name].type == 'ENUM':
            _check_enum(self._idname, properties[name], value)
        self.values[name] = value


class RecordingLayout:
    """``RecordingLayout(context)``; pass it as ``self.layout``; read ``calls`` (this layout and all below it)."""

    def __init__(self, context, calls=None) -> None:
        object.__setattr__(self, "_context", context)
        object.__setattr__(self, "calls", [] if calls is None else calls)
        object.__setattr__(self, "attributes", {})

    def __setattr__(self, name, value):
        if name not in _RNA.properties or name == "rna_type":
            raise LayoutError(f"UILayout has no attribute {name!r}")
        prop = _RNA.properties[name]
        if prop.type == 'ENUM':
            _check_enum("UILayout", prop, value)
        self.attributes[name] = value

    def __getattr__(self, name):
        if name not in _RNA.functions:
            raise AttributeError(f"UILayout has no method {name!r}")
        function = _RNA.functions[name]
        inputs = [p for p in function.parameters if not p.is_output]

        def call(*args, **kwargs):
            if len(args) > len(inputs):
                raise LayoutError(f"UILayout.{name}() takes {len(inputs)} arguments, got {len(args)}")
            by_name = {p.identifier: p for p in inputs}
            for parameter, value in zip(inputs, args, strict=False):
                if parameter.identifier in kwargs:
                    raise LayoutError(f"UILayout.{name}(): {parameter.identifier} given twice")
                kwargs[parameter.identifier] = value
            for key, value in kwargs.items():
                if key not in by_name:
                    raise LayoutError(f"UILayout.{name}() has no argument {key!r}")
                if by_name[key].type == 'ENUM':
                    _check_enum(f"UILayout.{name}()", by_name[key], value)
            missing = [p.identifier for p in inputs if p.is_required and p.identifier not in kwargs]
            if missing:
                raise LayoutError(f"UILayout.{name}() is missing {', '.join(missing)}")
            self.calls.append((name, kwargs))
            check = getattr(self, f"_check_{name}", None)
            result = check(**kwargs) if check is not None else None
            if name in _LAYOUT_FUNCTIONS:
                return RecordingLayout(self._context, self.calls)
            return result

        return call

    # Checks of the calls whose arguments name other things (properties, operators, lists).

    def _check_prop(self, data, property, **kwargs):
        _check_prop(data, property, "UILayout.prop()")

    def _check_template_ID(self, data, property, new="", open="", unlink="", **kwargs):
        prop = _check_prop(data, property, "UILayout.template_ID()")
        if prop is not None and prop.type != 'POINTER':
            raise LayoutError(f"UILayout.template_ID(): {property!r} is a {prop.type}, not an ID pointer")
        for idname in (new, open, unlink):
            if idname:
                operator_rna(idname)

    def _check_operator(self, operator, **kwargs):
        return OperatorProperties(operator)

    def _check_operator_menu_enum(self, operator, property, **kwargs):
        properties = operator_rna(operator).properties
        if property not in properties or properties[property].type != 'ENUM':
            raise LayoutError(f"operator {operator!r} has no enum property {property!r}")

    def _check_progress(self, factor=0.0, **kwargs):
        if not 0.0 <= factor <= 1.0:
            raise LayoutError(f"UILayout.progress(): factor {factor} outside 0..1")

    def _check_template_list(self, listtype_name, list_id, dataptr, propname, active_dataptr, active_propname,
                             **kwargs):
        ui_list = getattr(bpy.types, listtype_name, None)
        if ui_list is None or not issubclass(ui_list, bpy.types.UIList):
            raise LayoutError(f"UILayout.template_list(): no UIList {listtype_name!r} is registered")
        collection = _check_prop(dataptr, propname, "UILayout.template_list()")
        if collection.type != 'COLLECTION':
            raise LayoutError(f"UILayout.template_list(): {propname!r} is not a collection")
        active = _check_prop(active_dataptr, active_propname, "UILayout.template_list()")
        if active.type != 'INT':
            raise LayoutError(f"UILayout.template_list(): {active_propname!r} is not an integer property")
        draw_list(ui_list, self._context, self, dataptr, propname, active_dataptr, active_propname)


def draw_list(ui_list, context, layout, data, propname, active_data, active_propname):
    """Filter the collection with the list's ``filter_items`` and draw each shown row with its ``draw_item``."""
    items = getattr(data, propname)
    # The real value of UIList.bitflag_filter_item (bit 30); 0 hides a row.
    list_self = SimpleNamespace(bitflag_filter_item=1 << 30, layout_type='DEFAULT', filter_name="",
                                use_filter_invert=False, use_filter_sort_alpha=False,
                                use_filter_sort_reverse=False)
    flags, order = ([], [])
    if hasattr(ui_list, "filter_items"):
        flags, order = ui_list.filter_items(list_self, context, data, propname)
    if flags and len(flags) != len(items):
        raise LayoutError(f"{ui_list.__name__}.filter_items returned {len(flags)} flags for {len(items)} items")
    if order and sorted(order) != list(range(len(items))):
        raise LayoutError(f"{ui_list.__name__}.filter_items returned an order that is not a permutation")
    rows = []
    # Rows in display order: ``order[index]`` is where item ``index`` is shown.
    for index in sorted(range(len(items)), key=lambda i: order[i] if order else i):
        item = items[index]
        if flags and not flags[index] & list_self.bitflag_filter_item:
            continue
        layout.calls.append(("list_item", {"list": ui_list.__name__, "item": item, "index": index}))
        ui_list.draw_item(list_self, context, RecordingLayout(context, layout.calls), data, item, 0, active_data,
                          active_propname, index)
        rows.append(item)
    return rows


def draw_panel(panel, context):
    """Run ``panel.draw`` with a recording layout → the layout (its ``calls``); ``LayoutError`` on a bad call."""
    layout = RecordingLayout(context)
    panel.draw(SimpleNamespace(layout=layout), context)
    return layout


class _PrefsSelf:
    """``self`` for ``AddonPreferences.draw``: the real preferences, with a recording layout."""

    def __init__(self, preferences, layout):
        object.__setattr__(self, "_prefs", preferences)
        object.__setattr__(self, "layout", layout)

    def __getattr__(self, name):
        return getattr(self._prefs, name)


def draw_preferences(preferences, context):
    """Run the add-on preferences' ``draw`` with a recording layout → the layout; ``LayoutError`` on a bad call."""
    layout = RecordingLayout(context)
    type(preferences).draw(_PrefsSelf(preferences, layout), context)
    return layout


def texts(layout, method=None):
    """The ``text`` of every recorded call (of ``method`` only, if given), in drawing order."""
    return [kwargs.get("text", "") for name, kwargs in layout.calls if method in (None, name)]
