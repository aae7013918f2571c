"""The extension's CMake files, configured for real by CMake against a stand-in for Slicer's build tree.

Slicer itself cannot be built here, so ``find_package(Slicer)`` finds a small stand-in (written by this test) whose
``slicerMacroBuildScriptedModule``, ``ctkMacroCompilePythonScript`` and ``slicer_add_python_unittest`` take the same
arguments as Slicer's and CTK's (unknown keywords and missing files are fatal, as there) and record what would be
copied and installed. The test then lays the files out as the install step would and imports the engine and the
modules' Lib packages from that tree alone: what ships is what the modules import.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MODULES = ["BackSplitSegment", "BackSplitTrain"]
SHARED = "BackSplitShared"           # a package both modules import, built like Slicer's DICOMLib (WITH_SUBDIR)
SCRIPTED_DIR = "lib/Slicer-5.9/qt-scripted-modules"

FAKE_SLICER_CONFIG = """
set(Slicer_FOUND TRUE)
set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake)
set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/GenerateConfig.cmake)
set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/ExtensionCPack.cmake)
"""

FAKE_USE_SLICER = r"""
set(Slicer_USE_PYTHONQT ON)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR "@SCRIPTED_DIR@")
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR "@SCRIPTED_DIR@")
set(BACKSPLIT_MANIFEST "${CMAKE_BINARY_DIR}/manifest.txt")
file(WRITE ${BACKSPLIT_MANIFEST} "")

function(_backsplit_record)
  string(JOIN "|" line ${ARGN})
  file(APPEND ${BACKSPLIT_MANIFEST} "${line}\n")
endfunction()

# Same keywords as CTK's ctkMacroCompilePythonScript.
macro(ctkMacroCompilePythonScript)
  cmake_parse_arguments(MYC "NO_INSTALL_SUBDIR;GLOBAL_TARGET" "TARGET_NAME;SOURCE_DIR;DESTINATION_DIR;INSTALL_DIR"
                        "SCRIPTS;RESOURCES" ${ARGN})
  if(MYC_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "ctkMacroCompilePythonScript: unknown arguments ${MYC_UNPARSED_ARGUMENTS}")
  endif()
  foreach(varname TARGET_NAME SCRIPTS DESTINATION_DIR INSTALL_DIR)
    if(NOT DEFINED MYC_${varname})
      message(FATAL_ERROR "${varname} is mandatory")
    endif()
  endforeach()
  if(NOT DEFINED MYC_SOURCE_DIR)
    set(MYC_SOURCE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
  endif()
  foreach(file ${MYC_SCRIPTS})
    get_filename_component(file_ext ${file} EXT)
    if(NOT "${file_ext}" MATCHES "py")
      set(file "${file}.py")
    endif()
    if(NOT EXISTS ${MYC_SOURCE_DIR}/${file})
      message(FATAL_ERROR "ctkMacroCompilePythonScript(${MYC_TARGET_NAME}): no script ${file}")
    endif()
    _backsplit_record(script ${MYC_TARGET_NAME} ${MYC_SOURCE_DIR} ${file} ${MYC_DESTINATION_DIR} ${MYC_INSTALL_DIR}
                      "${MYC_NO_INSTALL_SUBDIR}")
  endforeach()
  foreach(file ${MYC_RESOURCES})
    if(NOT EXISTS ${MYC_SOURCE_DIR}/${file})
      message(FATAL_ERROR "ctkMacroCompilePythonScript(${MYC_TARGET_NAME}): no resource ${file}")
    endif()
    _backsplit_record(resource ${MYC_TARGET_NAME} ${MYC_SOURCE_DIR} ${file} ${MYC_DESTINATION_DIR} ${MYC_INSTALL_DIR}
                      "${MYC_NO_INSTALL_SUBDIR}")
  endforeach()
endmacro()

# Same keywords as Slicer's slicerMacroBuildScriptedModule.
macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY_SLICER "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  if(MY_SLICER_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "Unknown keywords given to slicerMacroBuildScriptedModule(): ${MY_SLICER_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT DEFINED MY_SLICER_NAME)
    message(FATAL_ERROR "NAME is mandatory")
  endif()
  _backsplit_record(module ${MY_SLICER_NAME} ${CMAKE_CURRENT_SOURCE_DIR} "${MY_SLICER_WITH_GENERIC_TESTS}"
                    "${MY_SLICER_WITH_SUBDIR}")
  # As Slicer's macro: WITH_SUBDIR copies into a folder named after the source folder and installs that folder.
  set(_no_install_subdir_option NO_INSTALL_SUBDIR)
  set(_destination_subdir "")
  if(MY_SLICER_WITH_SUBDIR)
    get_filename_component(_destination_subdir ${CMAKE_CURRENT_SOURCE_DIR} NAME)
    set(_destination_subdir "/${_destination_subdir}")
    set(_no_install_subdir_option "")
  endif()
  ctkMacroCompilePythonScript(
    TARGET_NAME ${MY_SLICER_NAME}
    SCRIPTS "${MY_SLICER_SCRIPTS}"
    RESOURCES "${MY_SLICER_RESOURCES}"
    DESTINATION_DIR ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}${_destination_subdir}
    INSTALL_DIR ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}
    ${_no_install_subdir_option}
    )
endmacro()

# Same keywords as Slicer's slicer_add_python_unittest.
macro(slicer_add_python_unittest)
  cmake_parse_arguments(MYT "" "TESTNAME_PREFIX;SCRIPT" "SLICER_ARGS" ${ARGN})
  if(MYT_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "slicer_add_python_unittest: unknown arguments ${MYT_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${MYT_SCRIPT})
    message(FATAL_ERROR "slicer_add_python_unittest: no script ${MYT_SCRIPT}")
  endif()
  _backsplit_record(unittest ${CMAKE_CURRENT_SOURCE_DIR} ${MYT_SCRIPT})
endmacro()
"""

FAKE_GENERATE_CONFIG = r"""
foreach(var EXTENSION_HOMEPAGE EXTENSION_CATEGORY EXTENSION_CONTRIBUTORS EXTENSION_DESCRIPTION EXTENSION_ICONURL
            EXTENSION_SCREENSHOTURLS EXTENSION_DEPENDS)
  _backsplit_record(meta ${var} "${${var}}")
endforeach()
_backsplit_record(project "${PROJECT_NAME}")
"""


def _needs_cmake():
    if not shutil.which("cmake") or not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")):
        pytest.skip("cmake and a C compiler are needed to configure the extension (project() enables C/C++)")


@pytest.fixture(scope="module")
def configured(tmp_path_factory):
    """Configure the extension once; returns the parsed manifest rows and the build folder."""
    _needs_cmake()
    root = tmp_path_factory.mktemp("cmake")
    fake = root / "FakeSlicer"
    fake.mkdir()
    (fake / "SlicerConfig.cmake").write_text(FAKE_SLICER_CONFIG)
    (fake / "UseSlicer.cmake").write_text(FAKE_USE_SLICER.replace("@SCRIPTED_DIR@", SCRIPTED_DIR))
    (fake / "GenerateConfig.cmake").write_text(FAKE_GENERATE_CONFIG)
    (fake / "ExtensionCPack.cmake").write_text("_backsplit_record(cpack done)\n")
    build = root / "build"
    result = subprocess.run(["cmake", "-S", str(REPO), "-B", str(build), f"-DSlicer_DIR={fake}", "-DBUILD_TESTING=ON",
                             "-Wno-dev"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"CMake configure failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    rows = [line.split("|") for line in (build / "manifest.txt").read_text(encoding="utf-8").splitlines() if line]
    return rows, build


def _files_of(rows, target):
    return {row[3] for row in rows if row[0] in ("script", "resource") and row[1] == target}


def _installed_layout(rows):
    """Where every file lands, relative to the install prefix (as ctkMacroCompilePythonScript installs it)."""
    layout = {}
    for _kind, _target, source_dir, file, destination, install_dir, no_subdir in \
            (row for row in rows if row[0] in ("script", "resource")):
        subdir = "" if no_subdir.upper() in ("TRUE", "ON", "1") else Path(destination).name + "/"
        layout[f"{install_dir}/{subdir}{file}"] = Path(source_dir) / file
    return layout


def test_top_level_configures_with_extension_metadata(configured):
    rows, _ = configured
    meta = {row[1]: row[2] for row in rows if row[0] == "meta"}
    assert [row[1] for row in rows if row[0] == "project"] == ["BackSplit"]
    assert meta["EXTENSION_CATEGORY"] == "Segmentation"
    assert meta["EXTENSION_DEPENDS"] == "PyTorch"
    assert all(meta[key] for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                                     "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"))
    icon_path = re.search(r"/(Resources/Icons/[^/]+\.png)$", meta["EXTENSION_ICONURL"])
    assert icon_path and (REPO / icon_path.group(1)).is_file(), meta["EXTENSION_ICONURL"]
    for url in meta["EXTENSION_SCREENSHOTURLS"].split():              # committed files (see test_catalog_entry.py)
        screenshot = re.search(r"^https://raw\.githubusercontent\.com/[^/]+/[^/]+/[^/]+/(.+\.png)$", url)
        assert screenshot and (REPO / screenshot.group(1)).is_file(), url
    assert meta["EXTENSION_CONTRIBUTORS"] == "BackSplit contributors"
    assert "Requires 3D Slicer 5.10 or later" in meta["EXTENSION_DESCRIPTION"]
    assert ["cpack", "done"] in rows                                   # ExtensionCPack included last
    assert {row[1] for row in rows if row[0] == "module"} == set(MODULES) | {SHARED}


@pytest.mark.parametrize("module", MODULES)
def test_module_ships_every_script_and_resource_and_registers_its_tests(configured, module):
    rows, _ = configured
    folder = REPO / module
    on_disk = {str(p.relative_to(folder)).replace(os.sep, "/") for p in folder.rglob("*")
               if p.is_file() and p.suffix in (".py", ".png", ".ui") and "__pycache__" not in p.parts
               and "Testing" not in p.parts}
    assert _files_of(rows, module) == on_disk
    assert [row for row in rows if row[0] == "module" and row[1] == module][0][3].upper() in ("TRUE", "ON", "1"), \
        "WITH_GENERIC_TESTS"
    assert ["unittest", str(folder), f"{module}.py"] in rows


def test_shared_package_ships_every_file_as_a_package_next_to_the_modules(configured):
    """BackSplitShared is not a module: no generic tests, installed as qt-scripted-modules/BackSplitShared/."""
    rows, _ = configured
    folder = REPO / SHARED
    on_disk = {p.name for p in folder.glob("*.py")}
    assert _files_of(rows, SHARED) == on_disk
    row = [row for row in rows if row[0] == "module" and row[1] == SHARED][0]
    assert row[3].upper() not in ("TRUE", "ON", "1"), "WITH_GENERIC_TESTS would load the package as a module"
    assert row[4].upper() in ("TRUE", "ON", "1"), "WITH_SUBDIR"
    layout = _installed_layout(rows)
    assert {f"{SCRIPTED_DIR}/{SHARED}/{name}" for name in on_disk} <= set(layout)
    assert f"{SCRIPTED_DIR}/{SHARED}.py" not in layout and f"{SCRIPTED_DIR}/__init__.py" not in layout
    assert not any(row[0] == "unittest" and row[1] == str(folder) for row in rows)


def test_engine_package_ships_every_file_next_to_the_modules(configured):
    rows, _ = configured
    folder = REPO / "backsplit"
    on_disk = {str(p.relative_to(folder)).replace(os.sep, "/") for p in folder.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.name != "CMakeLists.txt"}
    engine_targets = {row[1] for row in rows if row[0] in ("script", "resource") and Path(row[2]) == folder}
    assert len(engine_targets) == 1
    shipped = _files_of(rows, engine_targets.pop())
    assert shipped == on_disk, f"not shipped: {sorted(on_disk - shipped)}; listed but missing: " \
                               f"{sorted(shipped - on_disk)}"
    layout = _installed_layout(rows)
    assert f"{SCRIPTED_DIR}/backsplit/__init__.py" in layout           # a package next to the modules, not nested
    assert f"{SCRIPTED_DIR}/backsplit/backsplit/__init__.py" not in layout
    for module in MODULES:
        assert f"{SCRIPTED_DIR}/{module}.py" in layout
        assert f"{SCRIPTED_DIR}/{module}Lib/__init__.py" in layout
        assert f"{SCRIPTED_DIR}/Resources/UI/{module}.ui" in layout


def test_installed_tree_imports_engine_and_module_libs(configured, tmp_path):
    """Lay the files out as installed and import from that tree only (not from the repository)."""
    pytest.importorskip("slicer")
    rows, _ = configured
    prefix = tmp_path / "install"
    for relative, source in _installed_layout(rows).items():
        target = prefix / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    scripted = prefix / SCRIPTED_DIR
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(scripted)!r})
        repo, venv = {str(REPO)!r}, {str(REPO / ".venv")!r}
        sys.path = [p for p in sys.path if not (p.startswith(repo) and not p.startswith(venv))]
        import backsplit, backsplit.cli, backsplit.datasets.export
        import backsplit.training.process, backsplit.inference.process
        assert backsplit.__file__.startswith({str(scripted)!r}), backsplit.__file__
        from backsplit.demo.cases import demo_label_files
        assert demo_label_files() and str(demo_label_files()[0]).startswith({str(scripted)!r})
        import BackSplitSegmentLib.scene_cases, BackSplitSegmentLib.export_run, BackSplitSegmentLib.demo_scene
        import BackSplitSegmentLib.prediction_run, BackSplitSegmentLib.prediction_import
        import BackSplitShared.dependencies, BackSplitShared.install_run, BackSplitShared.panel_support
        import BackSplitShared.release
        assert BackSplitShared.__file__.startswith({str(scripted)!r}), BackSplitShared.__file__
        import BackSplitTrainLib.plots, BackSplitTrainLib.devices, BackSplitTrainLib.training_run
        assert "qt" not in sys.modules and "ctk" not in sys.modules
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                            timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
