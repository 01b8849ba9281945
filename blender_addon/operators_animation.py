# SPDX-License-Identifier: GPL-3.0-or-later
"""Camera motion, preview render and camera-view export operators (glue over core.motion / core.view_export)."""

import os

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty
from bpy.types import Operator

from . import connection, job_watch
from .core import motion
from .core.job_runner import ExportRunner
from .core.server_process import ServerStartError
from .core.view_export import ViewExportError
from .mixins import StrataOperator
from .preferences import get_preferences
from .scene import animation, stack, view
from .scene.stack import context_root, scene_roots
from .user_folders import output_folder

EXPORT_KINDS = (('PPTX', "PowerPoint (.pptx)", "One picture per layer on a slide the size of the render"),
                ('PSD', "Photoshop (.psd)", "One pixel layer per layer, with opacity and visibility"))


class STRATA_OT_animate_camera(StrataOperator, Operator):
    """Key a parallax camera move on the stack's camera: frame 1 is the rest pose, which renders the original"""
    bl_idname = "strata.animate_camera"
    bl_label = "Animate Camera"
    bl_options = {'REGISTER', 'UNDO'}
    needs, user_errors = 'STACK', (motion.MotionError, animation.AnimationError)

    preset: EnumProperty(name="Move", default='DOLLY_IN',
                         items=[(key, label, description) for key, (label, description) in motion.PRESETS.items()])
    amplitude: FloatProperty(
        name="Amplitude", default=motion.DEFAULT_AMPLITUDE, min=0.0, soft_max=2.0, max=10.0,
        description="How far the camera travels, as a fraction of the stack's depth (nearest to farthest layer): "
                    "a larger depth spacing shows more parallax. Zoom: fraction of the focal length. Left unset, "
                    f"it is chosen so the front layer moves {motion.DEFAULT_PARALLAX_FRACTION:.1%} of the frame "
                    "relative to the background")
    duration_frames: IntProperty(name="Frames", default=48, min=2, soft_max=600,
                                 description="Length of the move in frames")
    easing: EnumProperty(name="Easing", default='EASE_IN_OUT',
                         items=[(key, label, "") for key, (label, _, _) in motion.EASINGS.items()])
    coverage: EnumProperty(
        name="Keep Covered", default=motion.DEFAULT_COVERAGE,
        items=[(key, label, description) for key, (label, description) in motion.COVERAGES.items()],
        description="How the frame stays filled when the move looks past the background's edges")
    overscan_layers: BoolProperty(
        name="Overscan Every Layer", default=False,
        description="Also extend the other layer planes' edge pixels (for layers that touch the frame edge); off: "
                    "only the background")
    loop: BoolProperty(name="Loop", default=False,
                       description="Go out and come back to the rest pose, for seamless looping")

    def run(self, context):
        scene = context.scene
        root = context_root(context)
        camera = animation.camera_for_stack(root, context)
        start_frame = scene.frame_start
        focal_length_mm = stack.rest_lens_mm(camera, scene)
        geometry = animation.stack_geometry(root, camera, focal_length_mm)
        if not self.properties.is_property_set("amplitude"):
            # The stack's tasteful default; shown (and editable) in the redo panel, where it then stays put.
            self.amplitude = motion.default_amplitude(self.preset, geometry)
        path = motion.camera_path(self.preset, geometry, self.amplitude, self.duration_frames, self.easing,
                                  start_frame, self.coverage, self.loop)
        animation.apply_camera_path(scene, root, camera, path, self.overscan_layers)
        scene.camera = camera
        for note in path.notes:
            self.report({'INFO'}, note)
        summary = f"{motion.PRESETS[self.preset][0]}: frames {path.frame_start}–{path.frame_end}, amplitude " \
                  f"{self.amplitude:.3g}"
        if not self.preset.startswith("ZOOM"):
            parallax = motion.parallax_fraction(self.preset, geometry, self.amplitude)
            summary += f": the front layer moves {parallax:.1%} of the frame relative to the background"
        self.report({'INFO'}, summary)
        return {'FINISHED'}


class STRATA_OT_clear_camera_animation(StrataOperator, Operator):
    """Remove the camera's keyed move and put it back at the stack's rest pose"""
    bl_idname = "strata.clear_camera_animation"
    bl_label = "Clear Camera Move"
    bl_options = {'REGISTER', 'UNDO'}
    needs, user_errors = 'STACK', (animation.AnimationError,)

    def run(self, context):
        root = context_root(context)
        camera = animation.camera_for_stack(root, context)
        animation.reset_to_rest(context.scene, root, camera)
        return {'FINISHED'}


class STRATA_OT_render_preview(StrataOperator, Operator):
    """Render the scene's frame range at low resolution: MP4 when this Blender has FFmpeg, else PNG frames"""
    bl_idname = "strata.render_preview"
    bl_label = "Render Preview"
    bl_options = {'REGISTER'}
    needs = 'STACK'
    # OSError: the output folder
    user_errors, error_prefix = (RuntimeError, OSError, animation.AnimationError), "preview render failed: "

    engine: EnumProperty(
        name="Engine", default='CYCLES',
        items=(('CYCLES', "Cycles (CPU)", "Fast and exact for the emission-only planes, on any machine"),
               ('SCENE', "Scene's Engine", "Whatever the scene renders with (EEVEE needs a GPU to be quick)")))
    resolution_percentage: IntProperty(name="Resolution %", default=50, min=1, max=100, subtype='PERCENTAGE')
    samples: IntProperty(name="Samples (Cycles)", default=8, min=1, max=4096)
    video: BoolProperty(name="Video", default=True, description="MP4 (H.264) if FFmpeg is available; off: PNGs")
    frame_step: IntProperty(name="Frame Step", default=1, min=1, max=100)
    filepath: StringProperty(name="Output", subtype='FILE_PATH',
                             description="Output path without extension; empty: a strata_preview folder beside the "
                                         ".blend (or the per-user Strata folder)")

    def run(self, context):
        scene = context.scene
        if scene.camera is None:
            return self.refuse("the scene has no camera to render from")
        root = context_root(context)
        base = bpy.path.abspath(self.filepath) if self.filepath else os.path.join(
            output_folder("preview"), bpy.path.clean_name(root.name))
        written = animation.render_preview(scene, base, self.resolution_percentage, self.samples, self.video,
                                           self.frame_step, self.engine)
        where = written[0] if len(written) == 1 else f"{len(written)} frames in {os.path.dirname(written[0])}"
        self.report({'INFO'}, f"Preview written: {where}")
        return {'FINISHED'}


class STRATA_OT_export_view(StrataOperator, Operator):
    """Export what the camera sees now as layered PowerPoint or Photoshop: each plane where it lands in the image"""
    bl_idname = "strata.export_view"
    bl_label = "Export Camera View"
    bl_options = {'REGISTER'}
    needs, idle_only, user_errors = 'STACK', True, (ViewExportError, ServerStartError)

    kind: EnumProperty(name="Format", items=EXPORT_KINDS, default='PPTX')
    filepath: StringProperty(name="File", subtype='FILE_PATH')
    all_stacks: BoolProperty(name="All Stacks", default=True,
                             description="Include every stack in the scene (off: only the active stack)")

    def invoke(self, context, event):
        if not self.filepath:
            root = context_root(context)
            self.filepath = os.path.join(output_folder("export"),
                                         f"{bpy.path.clean_name(root.name)}.{self.kind.lower()}")
        context.window_manager.fileselect_add(self)
        return {'RUNNING_MODAL'}

    def run(self, context):
        scene = context.scene
        camera = scene.camera
        if camera is None:
            return self.refuse("the scene has no camera; the export shows what the scene camera sees")
        extension = "." + self.kind.lower()
        path = bpy.path.abspath(self.filepath) if self.filepath else os.path.join(
            output_folder("export"), bpy.path.clean_name(context_root(context).name) + extension)
        if not path.lower().endswith(extension):
            path += extension
        roots = scene_roots(scene) if self.all_stacks else [context_root(context)]
        result, pngs = view.collect_view(scene, camera, roots, os.path.splitext(os.path.basename(path))[0])
        settings = connection.settings_from_preferences(get_preferences(context))
        connection.check_settings(settings)
        client = connection.running_client(settings)
        # The server renders the file and may have to be started first: both on the runner's thread, the result
        # reaches the panel (and a pop-up) through job_watch, like a decomposition's.
        runner = ExportRunner(lambda: client or connection.ensure_client(settings), self.kind.lower(),
                              result.layout, pngs, path, notes=result.warnings).start()
        job_watch.watch(runner, scene, lambda target, exported: None, label=f"Export {self.kind}", undo=False)
        if not bpy.app.background:
            self.report({'INFO'}, f"Exporting {len(result.included)} layers to {path}")
            return {'FINISHED'}
        # Background Blender (a script, the bpy module) runs no timers: finish here, so the script's next line finds
        # the file and failures reach the caller.
        runner.join()
        job_watch.tick()
        snapshot = runner.snapshot()
        if snapshot.status != "succeeded":
            return self.refuse(snapshot.error or f"the export was {snapshot.status}")
        for note in snapshot.result.manifest["notes"][:-1]:
            self.report({'WARNING'}, note)
        self.report({'INFO'}, snapshot.result.manifest["notes"][-1])
        return {'FINISHED'}


classes = (STRATA_OT_animate_camera, STRATA_OT_clear_camera_animation, STRATA_OT_render_preview,
           STRATA_OT_export_view)
