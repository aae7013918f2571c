"""Inside the quiet block, warnings about the user's data reach the terminal; third-party noise goes to the log.
Run in a child process so the real file descriptors 1 and 2 are redirected (as on the command line)."""

import subprocess
import sys
import textwrap


def test_input_warnings_reach_the_console_and_noise_goes_to_the_log(tmp_path):
    log = tmp_path / "backsplit.log"
    code = textwrap.dedent(f"""
        import os, warnings
        from pathlib import Path
        from backsplit.io.itkmessages import InputWarning
        from backsplit.runtime.quiet import ThirdPartyOutput
        with ThirdPartyOutput(Path({str(log)!r})):
            print("nnU-Net says hello")
            os.write(2, b"C-level ITK noise\\n")
            warnings.warn(InputWarning("case 'a': the image header was repaired"))
            warnings.warn(UserWarning("torch internal detail"))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "backsplit: warning: case 'a': the image header was repaired" in result.stderr
    assert "nnU-Net says hello" not in result.stdout + result.stderr
    assert "C-level ITK noise" not in result.stderr and "torch internal detail" not in result.stderr
    text = log.read_text(encoding="utf-8")
    assert "nnU-Net says hello" in text and "C-level ITK noise" in text and "torch internal detail" in text
    assert "header was repaired" not in text
