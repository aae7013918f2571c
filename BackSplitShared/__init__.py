"""Slicer-side helpers that both BackSplit modules own (a package, not a module: built like Slicer's DICOMLib with
``slicerMacroBuildScriptedModule(NAME BackSplitShared ... WITH_SUBDIR)`` and installed as
``qt-scripted-modules/BackSplitShared/`` next to the modules and the engine ``backsplit``).

``panel_action`` (``PanelAction``: every button and its timers back to idle on every way out, one report per
failure), ``panel_support`` (``report_error``, ``TickGuard``, ``GuiBinding`` for the parameter node), ``install_run``
(installing PyTorch and nnU-Net from a panel without freezing it), ``dependencies`` (the blocking installer for
scripts, through ``slicer.util`` / ``slicer.packaging``), ``release`` (which Slicer releases BackSplit runs on).
The Slicer-free rules they apply (requirement strings, checks) live in the engine, ``backsplit.runtime.requirements``.
No module here imports Qt: Qt objects are handed in, so the tests run with slicer-core.
"""
