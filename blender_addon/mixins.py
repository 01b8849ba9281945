# SPDX-License-Identifier: GPL-3.0-or-later
"""What every Strata panel and operator shares, in one place: one panel mixin and one operator mixin.

``StrataPanel``: the sidebar tab (View3D ▸ Sidebar ▸ Strata) and when a panel shows (``shows_with``).

``StrataOperator``: when an operator can run (``needs``, ``idle_only``), with the reason a greyed-out button gives
in its tooltip, and one error path: ``run`` raises one of ``user_errors`` and the operator reports its message
(after ``error_prefix``) and cancels. ``run`` checks its input before it changes the scene, so a cancelled
operator leaves the scene as it was.
"""

from . import job_watch
from .scene import stack

# What a panel or an operator needs → (whether the context has it, what the user is told when it does not).
_REQUIREMENTS = {
    'SCENE': (lambda context: context.scene is not None, "No scene"),
    'STACK': (lambda context: stack.context_root(context) is not None, "Build a Strata stack first"),
    'SELECTED_STACK': (lambda context: stack.selected_root(context) is not None,
                       "Select an object of a Strata stack"),
    'LAYER': (lambda context: stack.active_layer(context)[1] is not None, "Pick a layer in the Strata layer list"),
    'JOB': (lambda context: job_watch.active() is not None, "No Strata job is running"),
}
IDLE_MESSAGE = "Wait for the running Strata job to finish"


def unmet(context, needs=None, idle_only=False):
    """Why an operator or panel cannot be used now ('' when it can): a job runs while it needs to be the only one,
    or ``needs`` (a key of ``_REQUIREMENTS``, or None) is missing."""
    if idle_only and job_watch.active() is not None:
        return IDLE_MESSAGE
    if needs is not None:
        present, message = _REQUIREMENTS[needs]
        if not present(context):
            return message
    return ""


class StrataPanel:
    """Panel mixin: View3D ▸ Sidebar ▸ Strata, shown while what ``shows_with`` names exists: by default the stack the
    UI works on (``scene.stack.context_root``); None: always."""

    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = "Strata"
    shows_with = 'STACK'

    @classmethod
    def poll(cls, context):
        return not unmet(context, cls.shows_with)


class StrataOperator:
    """Operator mixin: subclasses set ``needs``/``idle_only``/``user_errors``/``error_prefix`` and write ``run``."""

    needs = None
    idle_only = False  # one Strata job at a time: operators that start one are disabled while another runs
    user_errors: tuple[type[Exception], ...] = ()  # errors whose message is the user's answer
    error_prefix = ""

    @classmethod
    def poll(cls, context):
        why = unmet(context, cls.needs, cls.idle_only)
        if why:
            cls.poll_message_set(why)
            return False
        return True

    def execute(self, context):
        try:
            return self.run(context)
        except self.user_errors as e:
            return self.refuse(f"{self.error_prefix}{e}")

    def run(self, context):
        raise NotImplementedError

    def refuse(self, message, level='ERROR'):
        """Report ``message`` and end the operator without a change (an undo step is pushed only when FINISHED)."""
        self.report({level}, message)
        return {'CANCELLED'}
